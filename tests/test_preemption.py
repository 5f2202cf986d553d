"""lesson_utils.preemption: a run stopped by a real SIGTERM resumes bit for bit; the data order needs no state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lesson_utils import preemption
from lesson_utils.checkpoint import checkpoint_name, load_checkpoint
from lesson_utils.preemption import read_result, train
from lesson_utils.processes import RESULT_DIR_ENV, stop

STEPS, SAVE_EVERY = 10, 4


def same_bits(path_a: Path, path_b: Path) -> bool:
    """Every parameter, momentum buffer, the schedule and the RNG states of two checkpoints are equal."""
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    model = all(torch.equal(v, b["model_state_dict"][k]) for k, v in a["model_state_dict"].items())
    momentum = all(
        torch.equal(s["momentum_buffer"], b["optimizer_state_dict"]["state"][i]["momentum_buffer"])
        for i, s in a["optimizer_state_dict"]["state"].items()
    )
    rng = (
        torch.equal(a["rng_state"]["torch"], b["rng_state"]["torch"])
        and a["rng_state"]["python"] == b["rng_state"]["python"]
    )
    return (
        model and momentum and rng and a["scheduler_state_dict"] == b["scheduler_state_dict"] and a["step"] == b["step"]
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[float]]:
    folder = tmp_path_factory.mktemp("reference")
    run = train(folder, STEPS, SAVE_EVERY)
    assert run.status == "finished" and run.step == STEPS
    return folder / checkpoint_name(STEPS), run.losses


def test_every_epoch_sees_every_image_once_in_an_order_of_its_own() -> None:
    per_epoch = preemption.STEPS_PER_EPOCH
    epochs = [torch.cat([preemption.batch_at(e * per_epoch + p)[1] for p in range(per_epoch)]) for e in range(2)]
    assert all(sorted(e.tolist()) == sorted(preemption.dataset().labels.tolist()) for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])
    assert torch.equal(preemption.batch_at(11)[0], preemption.batch_at(11)[0]), "the same step, the same batch"


@pytest.mark.parametrize("stop_after", [1, 5, 8, 9])
def test_a_run_stopped_after_any_step_resumes_bit_for_bit(tmp_path, reference, stop_after) -> None:
    """Stops inside an epoch (5), at its end (8) and just after it (9): the same bits as never stopping."""
    steps_done = []
    stopped = train(tmp_path, STEPS, SAVE_EVERY, should_stop=lambda: len(steps_done) == stop_after,
                    on_step=lambda step, losses: steps_done.append(step))  # fmt: skip
    assert (stopped.status, stopped.step) == ("preempted", stop_after)
    assert (tmp_path / checkpoint_name(stop_after)).is_file(), "a checkpoint is written when asked to stop"
    torch.manual_seed(1234)  # another process would start with other random states
    resumed = train(tmp_path, STEPS, SAVE_EVERY)
    assert (resumed.status, resumed.start_step, resumed.step) == ("finished", stop_after, STEPS)
    assert stopped.losses + resumed.losses == reference[1]
    assert same_bits(reference[0], tmp_path / checkpoint_name(STEPS))


def test_the_rotation_keeps_the_last_three() -> None:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    train(folder, 7, save_every=1)
    assert sorted(p.name for p in folder.iterdir()) == [checkpoint_name(s) for s in (5, 6, 7)]


def start(folder: Path, *options: str) -> subprocess.Popen:
    (folder / "results").mkdir(parents=True)
    env = {**os.environ, RESULT_DIR_ENV: str(folder / "results")}
    command = [sys.executable, "-m", "lesson_utils.preemption", str(folder), "--steps", str(STEPS)]
    command += ["--save-every", str(SAVE_EVERY), "--step-seconds", "0.5", *options]
    with open(folder / "output.txt", "w") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def signal_at_step(process: subprocess.Popen, folder: Path, step: int, seconds: float = 240) -> None:
    """Send SIGTERM once the child reports that step ``step`` began."""
    deadline = time.monotonic() + seconds
    while (read_result(folder / "results", "progress") or {"step": -1})["step"] < step:
        assert process.poll() is None, (folder / "output.txt").read_text()
        assert time.monotonic() < deadline, "the child did not reach the step in time"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGTERM)


def test_a_real_sigterm_finishes_the_step_saves_and_the_restart_ends_bit_identical(tmp_path, reference) -> None:
    process = start(tmp_path)
    try:
        signal_at_step(process, tmp_path, 5)
        assert process.wait(timeout=60) == preemption.PREEMPTED_EXIT_CODE == 143
    finally:
        stop(process, grace=0)
    result = read_result(tmp_path / "results", "result")
    assert result["status"] == "preempted" and result["step"] == result["signal_during_step"] + 1
    assert read_result(tmp_path / "results", "signal")["during_step"] == result["signal_during_step"]
    assert 0 < result["seconds_signal_to_saved"] < 60
    assert (tmp_path / checkpoint_name(result["step"])).is_file()
    assert result["losses"] == reference[1][: result["step"]]

    (tmp_path / "results" / "result.json").unlink()
    restarted = subprocess.run(
        [sys.executable, "-m", "lesson_utils.preemption", str(tmp_path), "--steps", str(STEPS)],
        env={**os.environ, RESULT_DIR_ENV: str(tmp_path / "results")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    again = read_result(tmp_path / "results", "result")
    assert (again["status"], again["start_step"], again["step"]) == ("finished", result["step"], STEPS)
    assert same_bits(reference[0], tmp_path / checkpoint_name(STEPS))


def test_without_the_handler_sigterm_ends_it_at_once_and_the_work_since_the_last_checkpoint_is_lost(tmp_path) -> None:
    process = start(tmp_path, "--no-handler")
    try:
        signal_at_step(process, tmp_path, 6)
        assert process.wait(timeout=60) == -signal.SIGTERM
    finally:
        stop(process, grace=0)
    assert read_result(tmp_path / "results", "result") is None and read_result(tmp_path / "results", "signal") is None
    saved = sorted(p.name for p in tmp_path.glob("ckpt_*.pt"))
    assert saved == [checkpoint_name(4)], "steps 4 and 5 were done, but never saved"
    load_checkpoint(tmp_path / saved[0], required=preemption.REQUIRED)


def test_the_command_line_says_what_it_takes() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "lesson_utils.preemption", "--help"], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0 and "--no-handler" in finished.stdout and "--step-seconds" in finished.stdout


def test_a_grace_period_shorter_than_the_save_leaves_the_checkpoint_before(tmp_path) -> None:
    process = start(tmp_path, "--save-seconds", "2")
    try:
        signal_at_step(process, tmp_path, 5)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.3)  # the grace period: shorter than the rest of the step plus the save
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        stop(process, grace=0)
    assert read_result(tmp_path / "results", "signal") is not None, "the handler ran"
    assert read_result(tmp_path / "results", "result") is None, "but the run never got to its end"
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == [checkpoint_name(4)]
    load_checkpoint(tmp_path / checkpoint_name(4), required=preemption.REQUIRED)

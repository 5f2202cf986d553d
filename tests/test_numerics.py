"""The numeric profile (lesson_utils.numerics): the same training bits on every x86-64 machine with AVX2.

The slow tests simulate other machines the way their libraries let one: oneDNN's, ATen's and
MKL's instruction-set switches set to other values, other thread counts, and a process that
starts with none of the test suite's settings (a student's JupyterLab kernel). Under the profile
every one of them must train the same bits, the bits stored in the notebooks; without it they
must differ, or the test could not fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lesson_utils import numerics
from lesson_utils.processes import run

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
PROFILE_CELL = "from lesson_utils.numerics import use_numeric_profile\n\nuse_numeric_profile()"

# Machines, as environment variables a process starts with (each switch is a ceiling: a library
# never uses more than the CPU has, so a value above this CPU's acts as this CPU).
MACHINES = {
    "an AVX2 machine": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "an AVX-512 machine": {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "ATEN_CPU_CAPABILITY": "avx512",
    },
    "an AVX-512 machine with AMX, 2 threads": {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "OMP_NUM_THREADS": "2",
    },
    "MKL limited to SSE4.2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "a student's kernel (all cores, no settings)": {},
}
# The fingerprint (numerics.training_fingerprint) under the profile, recorded 2026-12-06 on an AMD
# EPYC with AVX-512 (the stored outputs were executed there too). Another value on an x86-64 CPU
# with AVX2 and the pinned torch means the profile no longer holds: the stored outputs will not either.
EXPECTED = "195fd3fa3d425f1f"


def fingerprint(start_with: dict[str, str], profile: bool) -> dict:
    """The training fingerprint of a fresh process started with only ``start_with`` of the settings."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PROFILE and k != numerics.SWITCH}
    env.update(start_with, TQDM_DISABLE="1")
    command = [sys.executable, "-m", "lesson_utils.numerics"] + (["--profile"] if profile else [])
    finished = run(command, timeout=300, env=env)
    assert finished.returncode == 0, finished.output
    return finished.results["result"]


def profile_holds() -> None:
    gaps = numerics.why_not_pinned()
    if gaps:
        pytest.skip("the numeric profile cannot hold on this machine: " + "; ".join(gaps))


@pytest.mark.slow
def test_every_simulated_machine_trains_the_same_bits_under_the_profile():
    profile_holds()
    found = {name: fingerprint(env, profile=True) for name, env in MACHINES.items()}
    assert {r["kernels"] for r in found.values()} == {"AVX2"} and {r["threads"] for r in found.values()} == {1}
    prints = {name: r["fingerprint"] for name, r in found.items()}
    assert set(prints.values()) == {EXPECTED}, f"under the profile, every machine must train {EXPECTED}: {prints}"


@pytest.mark.slow
def test_without_the_profile_the_simulated_machines_differ():
    """Otherwise the test above would pass whatever the profile did."""
    profile_holds()
    avx2 = fingerprint({**MACHINES["an AVX2 machine"], "OMP_NUM_THREADS": "1"}, profile=False)["fingerprint"]
    threads = fingerprint({**MACHINES["an AVX2 machine"], "OMP_NUM_THREADS": "2"}, profile=False)["fingerprint"]
    sse = fingerprint({"ONEDNN_MAX_CPU_ISA": "SSE41", "OMP_NUM_THREADS": "1"}, profile=False)["fingerprint"]
    assert len({avx2, threads, sse, EXPECTED}) == 4, "thread count and instruction set each change the bits"


@pytest.mark.slow
def test_a_machine_where_the_profile_cannot_hold_still_runs_the_notebooks_meaningfully(tmp_path):
    """LESSON_NUMERIC_PROFILE=off stands for ARM, another torch or BLAS: the training numbers differ
    from the stored ones, the run says so once at its start, and the tagged cells are checked by
    their assertions; every other cell is still compared."""
    notebook = ROOT / "notebooks" / "04_warm_start.ipynb"
    env = {k: v for k, v in os.environ.items() if k not in numerics.PROFILE}
    env.update({numerics.SWITCH: "off", "PYTEST_ADDOPTS": ""})
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", str(notebook)]
    loose = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert loose.returncode == 0, loose.stdout[-4000:]
    assert loose.stdout.count("numeric profile: NOT pinned on this machine (switched off") == 1, loose.stdout[:2000]
    # ...and the tagged cells really did print other numbers than the stored ones, or this proves nothing
    assert "training numbers than the stored ones" in loose.stdout, loose.stdout[-3000:]


def test_every_notebook_applies_the_profile_in_its_first_code_cell():
    for path in NOTEBOOKS:
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        first = cells[1] if "zh" in path.relative_to(ROOT / "notebooks").parts else cells[0]
        assert first.source.startswith(PROFILE_CELL), (
            f"{path.relative_to(ROOT)}: first code cell must be\n{PROFILE_CELL}"
        )
        assert not any("import torch" in c.source for c in cells[: cells.index(first)]), path


def test_the_profile_is_everything_on_an_avx2_cpu_and_only_threads_elsewhere(monkeypatch):
    monkeypatch.delenv(numerics.SWITCH, raising=False)
    monkeypatch.setattr(numerics, "cpu_has_avx2", lambda: True)
    assert numerics.numeric_environment() == numerics.PROFILE
    monkeypatch.setattr(numerics, "cpu_has_avx2", lambda: False)
    assert numerics.numeric_environment() == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    monkeypatch.setattr(numerics, "cpu_has_avx2", lambda: True)
    monkeypatch.setenv(numerics.SWITCH, "off")
    assert numerics.numeric_environment() == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_machines_where_it_cannot_hold_are_named(monkeypatch):
    import platform

    import torch

    monkeypatch.delenv(numerics.SWITCH, raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.setattr(torch, "__version__", "2.15.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    reasons = " | ".join(numerics.why_not_pinned())
    assert "arm64" in reasons and "2.15.0" in reasons and "GPU" in reasons
    monkeypatch.setenv(numerics.SWITCH, "off")
    assert "switched off" in numerics.why_not_pinned()[0]


def test_a_late_profile_warns_and_says_what_to_do():
    code = (
        "import torch, warnings; torch.ones(3).sum();"
        "from lesson_utils.numerics import use_numeric_profile\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always'); use_numeric_profile()\n"
        "print([str(w.message) for w in caught])"
    )
    env = {k: v for k, v in os.environ.items() if k not in numerics.PROFILE}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    if numerics.cpu_has_avx2() and "AVX512" in numerics_capability_of_a_bare_process():
        assert "came too late" in out and "Restart the kernel" in out, out


def numerics_capability_of_a_bare_process() -> str:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PROFILE}
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout


def test_make_notebooks_refuses_to_store_outputs_that_would_not_reproduce(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import execute_notebooks

    monkeypatch.setenv(numerics.SWITCH, "off")
    with pytest.raises(SystemExit, match="refusing to store outputs: the numeric profile cannot hold"):
        execute_notebooks.main([str(NOTEBOOKS[0])])

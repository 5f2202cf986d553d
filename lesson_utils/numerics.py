"""The numeric profile: the CPU settings under which a training run gives the same bits on every x86-64 machine.

Training adds up millions of numbers, and floating-point addition is not associative: the order
of the additions decides the last bits, and a few epochs turn different last bits into
different accuracies. On a CPU that order depends on four things, each measured here (a seeded
training of ``Net``, one machine, one torch wheel, one setting changed at a time; lesson 03,
section 4):

- the **thread count**: a parallel sum is cut into one piece per thread;
- **oneDNN** (convolutions) generates its kernels for the best instruction set it finds
  (AVX2, AVX-512, AMX) and each one blocks the sums differently;
- **ATen's own vectorised kernels** (reductions, softmax, the optimizers' updates) add 8 floats
  at a time with AVX2 and 16 with AVX-512;
- **MKL** (matrix products) picks its code path by CPU model and vendor.

:data:`PROFILE` pins each of them, with the switches the libraries document for it; the
environment variables are inherited by every process the lesson starts (``torchrun`` workers,
measuring children). Call :func:`use_numeric_profile` first in a notebook, before torch
computes anything: oneDNN and ATen read their switch once, when they first need it. It costs
speed (one thread, no AVX-512), which a lesson's small models do not notice.

Where it cannot hold (:func:`why_not_pinned`): another CPU architecture (ARM, such as Apple
Silicon), an x86 CPU without AVX2, a torch other than the pinned one, a build without MKL or
oneDNN, a GPU doing the computing. There the lessons teach the same things with other last
bits, and the tests compare the cells tagged :data:`TAG` by their assertions instead of their
printed numbers. ``LESSON_NUMERIC_PROFILE=off`` makes any machine behave like that (only the
thread count is pinned, as there), to see what the profile prevents and to test that path.

Example:
    >>> use_numeric_profile()
    >>> import torch
    >>> os.environ["OMP_NUM_THREADS"], torch.get_num_threads()
    ('1', 1)
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path

from lesson_utils.i18n import N_, _

PROFILE: dict[str, str] = {
    "OMP_NUM_THREADS": "1",  # one thread: a sum is one piece, added in one order
    "MKL_NUM_THREADS": "1",
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's convolutions: AVX2 kernels, also on AVX-512/AMX CPUs
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels: 8 floats at a time
    "MKL_CBWR": "COMPATIBLE",  # MKL's reproducibility mode: one code path on Intel and AMD alike
}
SWITCH = "LESSON_NUMERIC_PROFILE"  # "off": pin the thread count only, as where the profile cannot hold
PINNED_TORCH = "2.14.1"  # the outputs stored in the notebooks come from this build (pyproject.toml)
TAG = "profile-dependent"  # a cell whose printed numbers come from training: the same bits only under the profile
X86 = {"x86_64", "amd64", "x64"}

TOO_LATE = N_(
    "the numeric profile came too late: torch already chose {found} kernels in this process. "
    "Restart the kernel and run the first cell before anything else."
)


def cpu_has_avx2() -> bool | None:
    """Whether this x86 CPU has AVX2 (``None`` where it cannot be told, and off x86).

    Example:
        >>> cpu_has_avx2() in (True, False, None)
        True
    """
    if platform.machine().lower() not in X86:
        return None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # Linux
        return any(line.startswith("flags") and " avx2" in line for line in cpuinfo.read_text().splitlines())
    if platform.system() == "Windows":
        import ctypes

        return bool(ctypes.windll.kernel32.IsProcessorFeaturePresent(40))  # PF_AVX2_INSTRUCTIONS_AVAILABLE
    return None


def why_not_pinned() -> list[str]:
    """Why this machine's training bits can differ from the stored outputs' (empty: they cannot).

    Example:
        >>> isinstance(why_not_pinned(), list)
        True
    """
    import torch

    reasons = []
    if os.environ.get(SWITCH) == "off":
        reasons.append(_("switched off with {switch}=off").format(switch=SWITCH))
    machine = platform.machine()
    if machine.lower() not in X86:
        reasons.append(_("this CPU is {machine}, not x86-64: its kernels are other code").format(machine=machine))
    elif cpu_has_avx2() is not True:
        reasons.append(_("this x86 CPU has no AVX2 (or it cannot be told): the profile pins AVX2 kernels"))
    if torch.__version__.split("+")[0] != PINNED_TORCH:
        reasons.append(
            _("torch {found} is not the pinned {pinned}: another build has other kernels").format(
                found=torch.__version__, pinned=PINNED_TORCH
            )
        )
    if not torch.backends.mkl.is_available() or not torch.backends.mkldnn.is_available():
        reasons.append(_("this torch is built without MKL or oneDNN, whose switches the profile sets"))
    if torch.cuda.is_available():
        reasons.append(_("a GPU is available: the lessons train on it, with its own kernels"))
    return reasons


def numeric_environment() -> dict[str, str]:
    """The environment variables of the profile that apply on this machine, for a process to start with.

    All of :data:`PROFILE` on an x86 CPU with AVX2; only the thread count elsewhere (an AVX2
    kernel would not run there, and the other switches are x86 libraries'), and under
    ``LESSON_NUMERIC_PROFILE=off``.

    Example:
        >>> numeric_environment()["OMP_NUM_THREADS"]
        '1'
    """
    if os.environ.get(SWITCH) == "off" or cpu_has_avx2() is not True:
        return {key: value for key, value in PROFILE.items() if key.endswith("_NUM_THREADS")}
    return dict(PROFILE)


def use_numeric_profile() -> None:
    """Pin the numeric profile in this process and the processes it starts. Call it first.

    It sets :data:`PROFILE`'s environment variables (oneDNN and ATen read theirs when torch
    first needs them, MKL when it starts) and ``torch.set_num_threads(1)``. Calling it again is
    harmless. Where the profile cannot hold (an x86 CPU without AVX2, where an AVX2 kernel would
    not run; ARM) and under ``LESSON_NUMERIC_PROFILE=off``, it pins the thread count only.

    Example:
        >>> use_numeric_profile()
        >>> import torch
        >>> torch.get_num_threads()
        1
    """
    wanted = numeric_environment()
    os.environ.update(wanted)
    import torch

    torch.set_num_threads(1)
    found = torch.backends.cpu.get_cpu_capability()  # fixed for the process at its first use
    if "ATEN_CPU_CAPABILITY" in wanted and found != "AVX2":
        warnings.warn(_(TOO_LATE).format(found=found), RuntimeWarning, stacklevel=2)


def profile_report() -> str:
    """One line for :func:`lesson_utils.env.env_report`: what is pinned, or why it cannot be.

    Example:
        >>> use_numeric_profile()
        >>> profile_report().startswith(("1 thread", "not pinned"))
        True
    """
    import torch

    reasons = why_not_pinned()
    applied = all(os.environ.get(key) == value for key, value in PROFILE.items()) and torch.get_num_threads() == 1
    if not reasons and not applied:
        reasons = [_("not applied in this process: call use_numeric_profile() first")]
    if reasons:
        return _("not pinned here ({reasons}): training bits may differ from the stored outputs").format(
            reasons="; ".join(reasons)
        )
    return _("1 thread, oneDNN and ATen at AVX2, MKL_CBWR=COMPATIBLE (kernels: {found})").format(
        found=torch.backends.cpu.get_cpu_capability()
    )


def training_fingerprint(epochs: int = 1) -> str:
    """The first 16 hex digits of a sha256 over ``Net``'s weights and momentum buffers after a
    seeded training (``OfflineShapes(512)``, SGD with momentum): one bit changed anywhere, another value.

    Run it in fresh processes to compare machines (``python -m lesson_utils.numerics``): the
    switches the profile sets are read once per process.

    Example:
        >>> len(training_fingerprint())
        16
    """
    import hashlib

    import torch

    from lesson_utils import Net, OfflineShapes, seed_everything
    from lesson_utils.training import train_one_epoch

    seed_everything(0)
    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    data = OfflineShapes(512)
    for epoch in range(epochs):
        train_one_epoch(net, optimizer, data, epoch=epoch)
    tensors = [*net.state_dict().values(), *(s["momentum_buffer"] for s in optimizer.state.values())]
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> None:
    """``python -m lesson_utils.numerics [--profile]``: one training fingerprint, in this fresh process.

    With ``--profile`` it calls :func:`use_numeric_profile` first. The result (the fingerprint
    and the kernels torch chose) goes to :func:`lesson_utils.processes.write_result`.
    """
    import argparse

    import torch

    from lesson_utils.processes import write_result

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="apply the numeric profile first")
    args = parser.parse_args(argv)
    if args.profile:
        use_numeric_profile()
    fingerprint = training_fingerprint()
    found = {"fingerprint": fingerprint, "kernels": torch.backends.cpu.get_cpu_capability()}
    found["threads"] = torch.get_num_threads()
    write_result(found)
    print(found)


if __name__ == "__main__":
    main()

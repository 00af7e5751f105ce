"""What the test suite does with GPU tests on this machine: run them, skip them, or stop.

Test tooling, kept out of the shipped package: ``conftest.py`` gates the ``gpu`` tests with
it, and ``benchmarks/gpu_smoke.py`` reports what the gate would say.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def gpu_visible() -> tuple[bool, str]:
    """Whether a GPU is visible to this machine by means other than cuda-python, and what
    showed it: a ``/dev/nvidia0`` device node, ``nvidia-smi -L``, or ``torch.cuda``.

    The GPU-test gate compares this with :func:`hardnet_export._cuda.cuda_status`: a GPU seen
    here but not through the CUDA wrappers means a broken install, not a CPU machine. Never
    raises.
    """
    if os.path.exists("/dev/nvidia0"):
        return True, "/dev/nvidia0 exists"
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            listed = None
        if listed is not None and listed.returncode == 0 and "GPU" in listed.stdout:
            return True, f"nvidia-smi -L lists {listed.stdout.strip().splitlines()[0]!r}"
    try:
        import torch

        if torch.cuda.is_available():
            return True, f"torch.cuda sees {torch.cuda.device_count()} device(s)"
    except Exception:  # no torch, or a torch whose CUDA init fails: no evidence either way
        pass
    return False, "no /dev/nvidia0, no nvidia-smi GPU, no torch.cuda device"


def gpu_test_gate(gpu_visible: bool, wrappers_work: bool) -> str:
    """What the test suite does with GPU tests: ``"run"``, ``"skip"`` or ``"fail"``.

    ``fail`` is a GPU that the machine shows but the CUDA wrappers (cuda-python) cannot
    use, e.g. cuda-python 13 on a CUDA 12 driver, where every call returns
    cudaErrorInsufficientDriver and the device count reads 0: skipping there would let a
    GPU run "pass" having tested nothing.
    """
    if wrappers_work:
        return "run"
    return "fail" if gpu_visible else "skip"

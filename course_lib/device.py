"""Where a notebook runs and how big its runs are (introduced in notebook 06_training).

Notebooks never name ``cuda``: they ask ``get_device()`` for the best accelerator present and
``run_profile()`` for how much work to do there:

- ``"full"``: a CUDA GPU: paper-sized models, bf16 autocast, fused attention;
- ``"small"``: a CPU (or Apple's MPS): small models that train in a minute or two;
- ``"smallest"``: continuous integration or nbgrader grading (``CI`` or ``NBGRADER_EXECUTION``
  set): a few seconds per run, only enough to show that the code works.

``COURSE_PROFILE`` overrides the choice (for example ``COURSE_PROFILE=small`` on a GPU).
"""
from __future__ import annotations

import os
from typing import TypeVar

import torch

PROFILES = ("full", "small", "smallest")
T = TypeVar("T")


def get_device() -> torch.device:
    """The best device present: cuda, then Apple's mps, then cpu (introduced in notebook 06_training)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def run_profile(device: torch.device | str | None = None) -> str:
    """"full", "small" or "smallest", as the module docstring explains (introduced in notebook 06_training)."""
    chosen = os.environ.get("COURSE_PROFILE", "").strip()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"COURSE_PROFILE must be one of {', '.join(PROFILES)}, got {chosen!r}")
        return chosen
    # nbgrader sets NBGRADER_EXECUTION to "autograde" or "validate"; CI services set CI.
    if os.environ.get("NBGRADER_EXECUTION") or os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return "smallest"
    device = torch.device(device) if device is not None else get_device()
    return "full" if device.type == "cuda" else "small"


def pick(profile: str, *, full: T, small: T, smallest: T) -> T:
    """The value that goes with ``profile``: ``pick(run_profile(), full=..., small=..., smallest=...)``
    (introduced in notebook 06_training)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return {"full": full, "small": small, "smallest": smallest}[profile]


def describe(device: torch.device | str | None = None) -> str:
    """A short human description of the device, for reports: "cpu (2 threads)", "cuda (NVIDIA H100 ...)"
    (introduced in notebook 06_training)."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type

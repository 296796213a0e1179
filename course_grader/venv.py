"""The environment nbgrader needs when run from here: this interpreter's bin folder first on PATH.

nbgrader runs ``alembic`` when it creates a gradebook, and Jupyter finds kernels by PATH:
both must be the venv's, whatever the caller's PATH says.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping


def venv_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: os.environ) with the venv's bin folder first on PATH."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env

"""nbgrader's configuration chain, as nbgrader itself reads it, so that ``course grade``, its
workers and formgrader use one configuration (and one gradebook).

nbgrader loads ``jupyter_config`` and then ``nbgrader_config`` (``.py`` and ``.json``) from
Jupyter's config path (the user's ``~/.jupyter`` overriding the venv's and the system's),
and last the course folder's ``nbgrader_config.py`` (it runs there). :func:`files` collects
those files in that order, lowest priority first; :func:`load` merges them, here or in a
worker that has only their text.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from jupyter_core.paths import jupyter_config_path
from traitlets.config import Config
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader


def files(root: Path) -> list[list[str]]:
    """[name, text] of every configuration file nbgrader would read when run in ``root``."""
    chain = []
    for base in ("jupyter_config", "nbgrader_config"):
        folders = [Path(p) for p in reversed(jupyter_config_path())] + ([root] if base == "nbgrader_config" else [])
        for folder in folders:
            for suffix in (".py", ".json"):
                path = folder / f"{base}{suffix}"
                if path.is_file():
                    chain.append([f"{len(chain):02d}-{path.name}", path.read_text()])
    return chain


def load(chain: list[list[str]]) -> Config:
    """The configuration the files of :func:`files` make, later files overriding earlier ones."""
    config = Config()
    with tempfile.TemporaryDirectory(prefix="course-config-") as folder:
        for name, text in chain:
            (Path(folder) / name).write_text(text)
            loader = PyFileConfigLoader if name.endswith(".py") else JSONFileConfigLoader
            config.merge(loader(name, path=folder).load_config())
    return config

"""Data for the course: tokenizers, generated tasks and real corpora (introduced in notebook 06_training).

- ``tokenizers``: character-level and BPE tokenizers with the special tokens, and padded
  batches that carry the masks the models expect;
- ``dates``: a generated task, human-written dates to ISO dates;
- ``bible``: an English-Spanish parallel corpus read from Debian's SWORD Bible packages;
- ``reviews`` (07): labelled sentiment data; ``austen`` (08): Jane Austen's novels, both read
  from R's lazy-load files by ``rdata``;
- ``assets`` (07): every external model and data set, online and offline, in one registry.

Downloaded or extracted files live in one cache directory, ``$COURSE_DATA`` when it is set,
else the platform's user cache folder (``~/.cache/transformers-course`` on Linux); nothing
copied from elsewhere goes into the repository.
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The course's data cache, created if missing: ``$COURSE_DATA``, else the user cache folder
    that platformdirs names (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches``
    on macOS, ``%LOCALAPPDATA%`` on Windows) (introduced in notebook 06_training)."""
    # appauthor=False: no vendor folder above ours on Windows.
    path = Path(os.environ.get("COURSE_DATA") or platformdirs.user_cache_dir("transformers-course", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path

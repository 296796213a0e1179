"""Data for the course: tokenizers, generated tasks and real corpora (introduced in notebook 06_training).

- ``tokenizers``: character-level and BPE tokenizers with the special tokens, and padded
  batches that carry the masks the models expect;
- ``dates``: a generated task, human-written dates to ISO dates;
- ``bible``: an English-Spanish parallel corpus read from Debian's SWORD Bible packages;
- ``reviews`` (07): labelled sentiment data; ``austen`` (08): Jane Austen's novels, both read
  from R's lazy-load files by ``rdata``;
- ``assets`` (07): every external model and data set, online and offline, in one registry.

Downloaded or extracted files live in one cache directory, ``$COURSE_DATA`` when it is set,
else ``~/.cache/transformers-course``; nothing copied from elsewhere goes into the repository.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The course's data cache: ``$COURSE_DATA`` or ``~/.cache/transformers-course`` (created if missing)
    (introduced in notebook 06_training)."""
    path = Path(os.environ.get("COURSE_DATA") or Path.home() / ".cache" / "transformers-course")
    path.mkdir(parents=True, exist_ok=True)
    return path

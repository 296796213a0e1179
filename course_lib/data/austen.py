"""Jane Austen's six novels, a corpus for language modelling (introduced in notebook 08_gpt).

The text comes from the R package janeaustenr, which Debian ships as ``r-cran-janeaustenr``
(public-domain Project Gutenberg texts, one string per printed line): the asset
``janeaustenr`` of ``course_lib.data.assets``, installed or fetched into the course's cache.
``rdata`` reads the six character vectors out of its lazy-load database, without R.

The split is fixed so that results compare across runs and tools: the novels in publication
order joined by a blank line (4,025,032 characters, 81 distinct), the first 90% for training
and the last 10% (402,504 characters, the last six sevenths of *Persuasion*) for validation.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import assets
from .rdata import read_object
from .tokenizers import CharTokenizer

# (title, name of the object in janeaustenr), in publication order
NOVELS = (("Sense and Sensibility", "sensesensibility"), ("Pride and Prejudice", "prideprejudice"),
          ("Mansfield Park", "mansfieldpark"), ("Emma", "emma"),
          ("Northanger Abbey", "northangerabbey"), ("Persuasion", "persuasion"))


def load_novels() -> dict[str, str]:
    """{title: text} for the six novels in publication order, lines joined by newlines."""
    database = assets.fetch("janeaustenr") / "data" / "Rdata"
    return {title: "\n".join(read_object(database, name)) for title, name in NOVELS}


def load_text() -> str:
    """The six novels in publication order, joined by a blank line."""
    return "\n\n".join(load_novels().values())


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """The first 1 - val_fraction of ``text`` for training, the rest for validation: a split by
    position, so that validation text is text the model never saw."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


def load_char_data(val_fraction: float = 0.1) -> tuple[CharTokenizer, Tensor, Tensor]:
    """The character-level corpus: a CharTokenizer whose alphabet is every character of the whole
    text, and the training and validation token ids, each (N,) int64."""
    text = load_text()
    tokenizer = CharTokenizer.from_texts([text])
    train, val = split_text(text, val_fraction)
    return tokenizer, torch.tensor(tokenizer.encode(train)), torch.tensor(tokenizer.encode(val))

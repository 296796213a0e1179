"""Labelled sentiment data: reviews and whether they are positive (introduced in notebook 07_bert).

- Online: the IMDB movie reviews (``stanfordnlp/imdb`` on the Hugging Face hub, through
  ``datasets``): 25,000 train / 25,000 test, labels 0 negative, 1 positive, balanced.
- Offline: the Amazon Fine Food reviews that R's ``modeldata`` package ships (Debian's
  ``r-cran-modeldata``, asset ``modeldata`` of ``course_lib.data.assets``): 4,000 train /
  1,000 test, label 1 when the review gave five stars ("great", 65%), else 0 ("other").
  Every row names a different product, but Amazon shows one review under several variants of
  a product: 7 test reviews also appear word for word in training (and 19 twice in training).
  Read from R's lazy-load files with ``course_lib.data.rdata``, without R.

``load_sentiment()`` takes the online data set when the hub can be reached, else the offline one.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from . import assets, rdata

_BREAK = re.compile(r"<br\s*/?>", re.I)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Split:
    """Texts and their integer labels, in the same order."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def sample(self, n: int, seed: int = 0) -> "Split":
        """``n`` examples drawn at random without replacement (all of them when ``n >= len``), same
        class mix in expectation."""
        if n >= len(self):
            return self
        keep = sorted(random.Random(seed).sample(range(len(self)), n))
        return Split([self.texts[i] for i in keep], [self.labels[i] for i in keep])


@dataclass(frozen=True)
class SentimentData:
    """A sentiment data set: its name, the label names (index = label) and the two splits."""

    name: str
    label_names: tuple[str, ...]
    train: Split
    test: Split


def clean(text: str) -> str:
    """HTML line breaks to spaces and runs of spaces to one (both data sets carry ``<br />``)."""
    return _SPACE.sub(" ", _BREAK.sub(" ", text)).strip()


def load_fine_food() -> SentimentData:
    """The Amazon Fine Food reviews of R's modeldata package, offline."""
    database = assets.fetch("modeldata") / "data" / "Rdata"
    splits = []
    for name in ("training_data", "testing_data"):
        table = rdata.read_object(database, name)
        splits.append(Split([clean(t) for t in table["review"]], [int(s == "great") for s in table["score"]]))
    return SentimentData("Amazon Fine Food reviews (R modeldata)", ("other", "great"), *splits)


def load_imdb() -> SentimentData:
    """The IMDB movie reviews from the Hugging Face hub, through ``datasets``."""
    from datasets import load_dataset  # only the online path needs it

    data = load_dataset(assets.get("modeldata").online)
    splits = [Split([clean(t) for t in data[s]["text"]], list(data[s]["label"])) for s in ("train", "test")]
    return SentimentData("IMDB movie reviews (stanfordnlp/imdb)", ("negative", "positive"), *splits)


def load_sentiment(online: bool | None = None) -> SentimentData:
    """IMDB when the hub can be reached (or ``online=True``), else the Fine Food reviews."""
    if online is None:
        online = assets.online_available("modeldata")
    return load_imdb() if online else load_fine_food()

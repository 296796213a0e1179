"""An English-Spanish parallel corpus: the Bible, verse by verse (introduced in notebook 06_training).

Two public-domain translations that Debian ships as SWORD modules:

- ``sword-text-web``: the World English Bible (module engWEB2015eb, 2020 text);
- ``sword-text-sparv``: the Reina-Valera 1909 (module spaRV1909eb, 1909 spelling: "á" for
  "a", "fué", "crió").

Each verse of one aligns with the verse of the same (book, chapter, verse) in the other:
about 31,000 pairs. The two follow slightly different verse numberings (NRSVA and KJV), so a
few pairs do not say the same thing; most do.

The two packages come through ``course_lib.data.assets`` (assets "sword-web" and
"sword-sparv"): read from /usr/share/sword where they are installed
(``apt-get install sword-text-web sword-text-sparv``), else downloaded with ``apt-get download``
into the course's cache directory and unpacked there (no root needed, nothing is installed),
their checksums verified. Where apt cannot be used, the error names every way out.

The SWORD zText format, read here with the standard library only. Each testament (``ot``,
``nt``) has three files:

- ``.bzs``: one 12-byte entry per compressed block: offset in .bzz, compressed size,
  uncompressed size (little-endian uint32);
- ``.bzv``: one 10-byte entry per verse slot: block number, offset in the uncompressed block
  (uint32), size (uint16);
- ``.bzz``: the zlib-compressed blocks, concatenated.

The verse slots follow the module's versification in order: two testament headings, then
for each book a book heading, and for each chapter a chapter heading followed by its verses.
The text is OSIS XML; chapter headings carry ``<chapter sID="Gen.1"/>``, which is all this
reader needs to know where chapters, and so books, begin.
"""
from __future__ import annotations

import csv
import html
import os
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import cache_dir

MODULES = {"en": ("sword-web", "engWEB2015eb"), "es": ("sword-sparv", "spaRV1909eb")}  # asset, SWORD module
PAIRS_FILE = "bible_en_es.tsv"

# Held-out books (the defaults of split_by_book): a narrative, a prophet and a letter for the
# test set, two short books for validation.
TEST_BOOKS = ("Ruth", "Jonah", "Mark", "Phil")
VAL_BOOKS = ("Obad", "Titus", "2John")

_CHAPTER = re.compile(r'<chapter\b[^>]*\bsID="([^".]+)\.(\d+)"')
_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
# The WEB appends its glossary to the last verse of Revelation.
_GLOSSARY = re.compile(r'<div\b[^>]*type="glossary".*', re.S)
# The 1909 printing sets the first word of a chapter in capitals: "EN el principio",
# "Y ACONTECIÓ en los días", "...su hijo. ¡OH Jehová": the first all-capitals word of a
# chapter's first verse that is not next to another one (as in an inscription).
_CAPS = "A-ZÁÉÍÓÚÑÜÂÊÎÔÛ"
_CHAPTER_CAPS = re.compile(rf"(?<![{_CAPS}]{{2}} )\b[{_CAPS}]{{2,}}\b(?! [{_CAPS}]+\b)")
_SENTENCE_START = re.compile(r"(^|[.:;!?] )[¡¿«(]?$")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class VersePair:
    """One aligned verse (introduced in notebook 06_training)."""

    book: str      # OSIS abbreviation: "Gen", "John", "1Cor", ...
    chapter: int
    verse: int
    en: str
    es: str


def osis_to_text(osis: str) -> str:
    """The plain text of one verse of OSIS XML: footnotes dropped, markup removed, spaces collapsed
    (introduced in notebook 06_training)."""
    text = _GLOSSARY.sub("", osis)
    text = html.unescape(_TAG.sub(" ", _NOTE.sub(" ", text)))
    text = _SPACE.sub(" ", text).strip()
    # Markup between a word and its punctuation left a space: "increased !" -> "increased!"
    text = re.sub(r" ([,.;:!?’”)»])", r"\1", text)
    return re.sub(r"([¡¿(«“‘]) ", r"\1", text)


def restore_chapter_case(text: str, word_counts: Counter) -> str:
    """Undo the capitals of a chapter's first word: "EN el principio" -> "En el principio",
    "Y ACONTECIÓ" -> "Y aconteció", "Y EZECHÎAS" -> "Y Ezechîas" (introduced in notebook 06_training).

    At the start of a sentence the word is capitalised; elsewhere it takes whichever of its
    lowercase and capitalised forms is more frequent in ``word_counts`` (names stay capitalised).
    """
    match = _CHAPTER_CAPS.search(text)
    if not match:
        return text
    word = match[0]
    if _SENTENCE_START.search(text[:match.start()]) or word_counts[word.capitalize()] > word_counts[word.lower()]:
        word = word.capitalize()
    else:
        word = word.lower()
    return text[:match.start()] + word + text[match.end():]


def _slots(path: Path) -> list[str]:
    """Every verse slot of one testament (``path`` without suffix: .../ot or .../nt), as OSIS text."""
    bzs = path.with_suffix(".bzs").read_bytes()
    bzv = path.with_suffix(".bzv").read_bytes()
    bzz = path.with_suffix(".bzz").read_bytes()
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs), 12)]
    cache: dict[int, bytes] = {}
    slots = []
    for i in range(0, len(bzv), 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, i)
        if size == 0:
            slots.append("")
            continue
        if block not in cache:
            start, compressed, _ = blocks[block]
            cache[block] = zlib.decompress(bzz[start:start + compressed])
        slots.append(cache[block][offset:offset + size].decode("utf-8"))
    return slots


def read_ztext(folder: str | Path) -> dict[tuple[str, int, int], str]:
    """The verses of a SWORD zText module: {(book, chapter, verse): OSIS text} (introduced in notebook 06_training).

    Verses whose slot is empty are left out; headings are not verses.
    """
    folder = Path(folder)
    verses = {}
    for testament in ("ot", "nt"):
        if not folder.joinpath(testament + ".bzv").exists():
            continue  # a module may hold one testament only
        slots = _slots(folder / testament)
        starts = [(i, m[1], int(m[2])) for i, s in enumerate(slots) if (m := _CHAPTER.search(s))]
        for n, (start, book, chapter) in enumerate(starts):
            end = starts[n + 1][0] if n + 1 < len(starts) else len(slots)
            if n + 1 < len(starts) and starts[n + 1][2] == 1:
                end -= 1  # the slot before a chapter 1 is the next book's heading
            for verse, osis in enumerate(slots[start + 1:end], start=1):
                if osis.strip():
                    verses[(book, chapter, verse)] = osis
    if not verses:
        raise ValueError(f"no verses found in {folder}: is it a SWORD zText module?")
    return verses


def module_dir(language: str) -> Path:
    """The folder of the SWORD module of ``language`` ("en" or "es"), fetched if needed
    (introduced in notebook 06_training). Raises ``assets.AssetUnavailable`` (a RuntimeError)
    with the ways out when the package cannot be had."""
    from .assets import fetch

    asset, module = MODULES[language]
    return fetch(asset) / "modules" / "texts" / "ztext" / module


def align(english: dict, spanish: dict, max_ratio: float = 2.0) -> list[VersePair]:
    """Pairs of the verses that both texts have, with their plain text, in English canonical order
    (introduced in notebook 06_training).

    Verses that are empty once their notes are dropped are skipped, and so are pairs where one
    side is more than ``max_ratio`` times as long as the other (in characters): there the two
    numberings differ and the verses do not say the same thing (about 60 pairs). The Spanish
    chapter-initial capitals are undone with ``restore_chapter_case``.
    """
    es_text = {key: osis_to_text(osis) for key, osis in spanish.items()}
    counts = Counter(w for key, text in es_text.items() if key[2] != 1 for w in _WORD.findall(text))
    pairs = []
    for key, osis in english.items():
        if key in es_text:
            en, es = osis_to_text(osis), es_text[key]
            if key[2] == 1:
                es = restore_chapter_case(es, counts)
            if en and es and 1 / max_ratio <= len(es) / len(en) <= max_ratio:
                pairs.append(VersePair(*key, en, es))
    return pairs


def load_pairs(refresh: bool = False) -> list[VersePair]:
    """The aligned English-Spanish verses, read once from the SWORD modules and then from a cache
    file ``cache_dir()/bible_en_es.tsv`` (introduced in notebook 06_training)."""
    path = cache_dir() / PAIRS_FILE
    if refresh or not path.exists():
        pairs = align(read_ztext(module_dir("en")), read_ztext(module_dir("es")))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(
                (p.book, p.chapter, p.verse, p.en, p.es) for p in pairs)
        tmp.replace(path)  # a run interrupted mid-write leaves no half-written cache
    with path.open(encoding="utf-8", newline="") as f:
        return [VersePair(b, int(c), int(v), en, es) for b, c, v, en, es in csv.reader(f, delimiter="\t")]


def split_by_book(pairs: list[VersePair], val_books=VAL_BOOKS, test_books=TEST_BOOKS) -> dict[str, list[VersePair]]:
    """{"train", "val", "test"}: whole books go to validation and test, so that no verse of a
    held-out book is seen in training (introduced in notebook 06_training)."""
    if set(val_books) & set(test_books):
        raise ValueError(f"a book cannot be in both validation and test: {set(val_books) & set(test_books)}")
    known = {p.book for p in pairs}
    if unknown := (set(val_books) | set(test_books)) - known:
        raise ValueError(f"unknown books {sorted(unknown)}; books are OSIS abbreviations such as "
                         f"{', '.join(sorted(known)[:6])}")
    split = {"train": [], "val": [], "test": []}
    for p in pairs:
        split["test" if p.book in test_books else "val" if p.book in val_books else "train"].append(p)
    return split


if __name__ == "__main__":  # `python -m course_lib.data.bible` fetches and caches the corpus ahead of time
    print(f"{len(load_pairs(refresh=True))} aligned verses cached in {cache_dir() / PAIRS_FILE}")

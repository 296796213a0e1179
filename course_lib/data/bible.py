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

Each module is described by its ``.conf`` in the library's ``mods.d/`` folder: where its
files are (``DataPath``), its driver (``ModDrv=zText``) and its *versification*
(``Versification=NRSVA``, KJV when absent): the books, their chapters and each chapter's
number of verses. The SWORD zText format, read here with the standard library; each
testament (``ot``, ``nt``) has three files:

- ``.bzs``: one 12-byte entry per compressed block: offset in .bzz, compressed size,
  uncompressed size (little-endian uint32);
- ``.bzv``: one 10-byte entry per verse slot: block number, offset in the uncompressed block
  (uint32), size (uint16);
- ``.bzz``: the zlib-compressed blocks, concatenated.

The verse slots follow the versification in order: two testament headings, then for each
book a book heading, and for each chapter a chapter heading followed by its verses. So a
verse's number comes from its slot's position alone; the versification tables are SWORD's
own, as ``pysword`` ships them. The text is OSIS XML.
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

from pysword.canons import canons

from . import cache_dir

MODULES = {"en": ("sword-web", "engWEB2015eb"), "es": ("sword-sparv", "spaRV1909eb")}  # asset, SWORD module
# Named for the numbering that made it: a cache from before verses were numbered by the
# versification (Daniel 12:13 missing) is not read back.
PAIRS_FILE = "bible_en_es_versified.tsv"

# Held-out books (the defaults of split_by_book): a narrative, a prophet and a letter for the
# test set, two short books for validation.
TEST_BOOKS = ("Ruth", "Jonah", "Mark", "Phil")
VAL_BOOKS = ("Obad", "Titus", "2John")

# A chapter heading's own marker, which names the chapter that the versification puts there.
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
    """One aligned verse."""

    book: str      # OSIS abbreviation: "Gen", "John", "1Cor", ...
    chapter: int
    verse: int
    en: str
    es: str


def osis_to_text(osis: str) -> str:
    """The plain text of one verse of OSIS XML: footnotes dropped, markup removed, spaces collapsed."""
    text = _GLOSSARY.sub("", osis)
    text = html.unescape(_TAG.sub(" ", _NOTE.sub(" ", text)))
    text = _SPACE.sub(" ", text).strip()
    # Markup between a word and its punctuation left a space: "increased !" -> "increased!"
    text = re.sub(r" ([,.;:!?’”)»])", r"\1", text)
    return re.sub(r"([¡¿(«“‘]) ", r"\1", text)


def restore_chapter_case(text: str, word_counts: Counter) -> str:
    """Undo the capitals of a chapter's first word: "EN el principio" -> "En el principio",
    "Y ACONTECIÓ" -> "Y aconteció", "Y EZECHÎAS" -> "Y Ezechîas".

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


def read_conf(path: str | Path) -> dict[str, str]:
    """The ``key=value`` lines of a SWORD module's ``.conf`` (a repeated key keeps its last value)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return dict(line.strip().split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def versification(name: str) -> dict[str, list[tuple[str, list[int]]]]:
    """SWORD's versification ``name`` ("KJV", "NRSVA", ...): {testament: [(OSIS book, verses per
    chapter)]}, from the tables pysword ships."""
    if name.lower() not in canons:
        raise ValueError(f"unknown versification {name!r}; SWORD's are: {', '.join(sorted(canons))}")
    return {testament: [(osis, list(chapters)) for _, osis, _, chapters in books]
            for testament, books in canons[name.lower()].items()}


def read_ztext(folder: str | Path, books: dict[str, list[tuple[str, list[int]]]]) -> dict[tuple[str, int, int], str]:
    """The verses of a SWORD zText module, numbered by its versification ``books``
    (``versification(name)``): {(book, chapter, verse): OSIS text}.

    Verses whose slot is empty are left out; headings are not verses. ValueError when the
    module's slots do not fit the versification (their number, or a chapter heading's marker).
    """
    folder = Path(folder)
    verses = {}
    for testament, testament_books in books.items():
        if not folder.joinpath(testament + ".bzv").exists():
            continue  # a module may hold one testament only
        slots = _slots(folder / testament)
        expected = 2 + sum(1 + len(chapters) + sum(chapters) for _, chapters in testament_books)
        if len(slots) != expected:
            raise ValueError(f"{folder / testament}.bzv has {len(slots)} verse slots, its versification "
                             f"{expected}: the module's .conf names another versification")
        slot = 2  # after the module's and the testament's headings
        for book, chapters in testament_books:
            slot += 1  # the book's heading
            for chapter, count in enumerate(chapters, start=1):
                if (marker := _CHAPTER.search(slots[slot])) and (marker[1], int(marker[2])) != (book, chapter):
                    raise ValueError(f"{folder / testament}: the heading of {book} {chapter} is marked "
                                     f"{marker[1]} {marker[2]}: the versification does not fit the module")
                for verse, osis in enumerate(slots[slot + 1:slot + 1 + count], start=1):
                    if osis.strip():
                        verses[(book, chapter, verse)] = osis
                slot += 1 + count
    if not verses:
        raise ValueError(f"no verses found in {folder}: is it a SWORD zText module?")
    return verses


def read_module(library: str | Path, module: str) -> dict[tuple[str, int, int], str]:
    """The verses of the zText ``module`` of the SWORD library folder ``library`` (the one holding
    ``mods.d/``), numbered by the versification that its .conf names."""
    conf = read_conf(Path(library) / "mods.d" / f"{module}.conf")
    if conf.get("ModDrv", "").lower() != "ztext" or conf.get("CompressType", "ZIP").upper() != "ZIP":
        raise ValueError(f"{module}: ModDrv={conf.get('ModDrv')} CompressType={conf.get('CompressType')}; "
                         f"this reader reads zlib-compressed zText modules only")
    return read_ztext(Path(library) / conf["DataPath"], versification(conf.get("Versification", "KJV")))


def library_dir(language: str) -> Path:
    """The SWORD library folder (the one holding ``mods.d/``) with the module of ``language``
    ("en" or "es"), fetched if needed. Raises ``assets.AssetUnavailable`` (a RuntimeError) with
    the ways out when the package cannot be had."""
    from .assets import fetch

    return fetch(MODULES[language][0])


def load_verses(language: str) -> dict[tuple[str, int, int], str]:
    """The verses of ``language``'s module ("en" or "es"): {(book, chapter, verse): OSIS text}."""
    return read_module(library_dir(language), MODULES[language][1])


def align(english: dict, spanish: dict, max_ratio: float = 2.0) -> list[VersePair]:
    """Pairs of the verses that both texts have, with their plain text, in English canonical order.

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
    file ``cache_dir()/PAIRS_FILE``."""
    path = cache_dir() / PAIRS_FILE
    if refresh or not path.exists():
        pairs = align(load_verses("en"), load_verses("es"))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(
                (p.book, p.chapter, p.verse, p.en, p.es) for p in pairs)
        tmp.replace(path)  # a run interrupted mid-write leaves no half-written cache
    with path.open(encoding="utf-8", newline="") as f:
        return [VersePair(b, int(c), int(v), en, es) for b, c, v, en, es in csv.reader(f, delimiter="\t")]


def split_by_book(pairs: list[VersePair], val_books=VAL_BOOKS, test_books=TEST_BOOKS) -> dict[str, list[VersePair]]:
    """{"train", "val", "test"}: whole books go to validation and test, so that no verse of a
    held-out book is seen in training."""
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

"""course_lib.data.rdata against the ``rdata`` package (the oracle) and R's format as documented.

- Real lazy-load databases from Debian: janeaustenr (zlib) and modeldata (xz); every object
  of both is read, and the novels and the sentiment data frames equal what ``rdata`` reads
  from the same bytes, exactly (strings) or to 1e-12 (numbers, NaN for NA).
- The .rdb entry formats of every compression type, on data compressed here by the formula.
- Hand-serialized objects (ALTREP sequences, factors with NA, named lists) against ``rdata``.
The tests that need the Debian packages skip, saying why, where they cannot be fetched.
"""
import bz2
import lzma
import struct
import warnings
import zlib

import numpy as np
import pytest

from course_lib.data import assets, austen
from course_lib.data.rdata import decompress, parse, read_index, read_object, read_raw, to_python

rdata = pytest.importorskip("rdata")


def package_data(name):
    try:
        return assets.fetch(name) / "data" / "Rdata"
    except assets.AssetUnavailable as error:
        pytest.skip(f"R package {name} unavailable: {error}")


def oracle(database, name):
    """What the rdata package makes of the same entry."""
    variables, compressed = read_index(database)
    offset, length = variables[name]
    with open(f"{database}.rdb", "rb") as f:
        f.seek(offset)
        data = decompress(f.read(length), compressed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS"
        return rdata.conversion.convert(rdata.parser.parse_data(data))


def assert_column_equal(mine, theirs):
    theirs = list(theirs) if not hasattr(theirs, "to_numpy") else theirs.to_numpy()
    if isinstance(mine, list):
        assert len(mine) == len(theirs)
        assert [None if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in theirs] == mine
    else:
        np.testing.assert_allclose(np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float), rtol=1e-12)


# --- compression -----------------------------------------------------------------------------

DATA = b"X\n" + bytes(range(256)) * 40


def entry(body, kind=None):
    return struct.pack(">I", len(DATA)) + (b"" if kind is None else kind) + body


@pytest.mark.parametrize("compressed,blob", [
    (0, DATA),
    (1, entry(zlib.compress(DATA))),                      # zlib: no type byte
    (2, entry(bz2.compress(DATA), b"2")),
    (3, entry(lzma.compress(DATA, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}]), b"Z")),
    (3, entry(zlib.compress(DATA), b"1")),                # R falls back when xz does not pay
    (3, entry(DATA, b"0")),
])
def test_every_entry_format_decompresses(compressed, blob):
    assert decompress(blob, compressed) == DATA


def test_bad_entries_are_refused():
    with pytest.raises(ValueError, match="type byte"):
        decompress(entry(DATA, b"?"), 3)
    with pytest.raises(ValueError, match="header says"):
        decompress(struct.pack(">I", 5) + zlib.compress(DATA), 1)
    with pytest.raises(ValueError, match="XDR"):
        parse(b"A\n" + DATA)


# --- hand-serialized objects ----------------------------------------------------------------

def i32(*values):
    return struct.pack(f">{len(values)}i", *values)


def charsxp(s):
    return i32(9 | (64 << 12), len(s)) + s.encode() if s is not None else i32(9, -1)


def symbol(s):
    return i32(1) + charsxp(s)


def header():
    return b"X\n" + i32(3, 0x40201, 0x30500, 5) + b"UTF-8"


def altrep(name, state, type_code):
    info = i32(2) + symbol(name) + i32(2) + symbol("base") + i32(2) + i32(13, 1, type_code) + i32(254)
    return i32(238) + info + state + i32(254)


def attributes(**attrs):
    out = b""
    for tag, value in attrs.items():
        out += i32(2 | (1 << 10)) + symbol(tag) + value
    return out + i32(254)


def strsxp(*strings):
    return i32(16, len(strings)) + b"".join(charsxp(s) for s in strings)


def oracle_bytes(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rdata.conversion.convert(rdata.parser.parse_data(data))


@pytest.mark.parametrize("body", [
    altrep("compact_intseq", i32(14, 3) + struct.pack(">3d", 5, 10, 1), 13),          # 10:14
    altrep("compact_realseq", i32(14, 3) + struct.pack(">3d", 4, 0.5, 1), 14),        # 0.5 + 0:3
    i32(13, 4, 7, -(2 ** 31), 0, 2),                                                  # with NA
    i32(14, 3) + struct.pack(">3d", 1.5, float("nan"), -2),
    i32(10, 3, 1, 0, -(2 ** 31)),                                                     # logical with NA
])
def test_vectors_equal_the_rdata_package(body):
    data = header() + body
    theirs = np.ma.filled(np.ma.asarray(oracle_bytes(data), dtype=float), np.nan)  # NA is masked there
    np.testing.assert_array_equal(np.asarray(to_python(parse(data)), dtype=float), theirs)


def test_factor_and_named_list_equal_the_rdata_package():
    factor = i32(13 | (1 << 8) | (1 << 9), 4, 2, 1, -(2 ** 31), 2) + attributes(levels=strsxp("lo", "hi"),
                                                                               **{"class": strsxp("factor")})
    named = i32(19 | (1 << 9), 2) + strsxp("a", None) + factor + attributes(names=strsxp("s", "f"))
    mine = to_python(parse(header() + named))
    theirs = oracle_bytes(header() + named)
    assert mine == {"s": ["a", None], "f": ["hi", "lo", None, "hi"]}
    assert list(theirs["s"]) == ["a", None]
    assert [None if isinstance(x, float) else x for x in theirs["f"]] == mine["f"]


# --- real databases ---------------------------------------------------------------------------

def test_jane_austen_novels_equal_the_rdata_package():
    database = package_data("janeaustenr")
    variables, compressed = read_index(database)
    assert compressed == 1 and set(variables) == {name for _, name in austen.NOVELS}
    for _, name in austen.NOVELS:
        assert read_object(database, name) == list(oracle(database, name))
    text = austen.load_text()
    assert len(text) == 4_025_032 and len(set(text)) == 81
    assert text.startswith("SENSE AND SENSIBILITY") and text.endswith("Finis")


def test_modeldata_sentiment_frames_equal_the_rdata_package():
    database = package_data("modeldata")
    variables, compressed = read_index(database)
    assert compressed == 3
    for name, rows, great in (("training_data", 4000, 2600), ("testing_data", 1000, 658)):
        mine, theirs = read_object(database, name), oracle(database, name)
        assert list(mine) == ["product", "review", "score"] == list(theirs.columns)
        assert len(mine["review"]) == rows and mine["score"].count("great") == great
        for column in mine:
            assert_column_equal(mine[column], theirs[column])
    assert read_raw(database, "training_data").attr("class") == ["tbl_df", "tbl", "data.frame"]


def test_every_modeldata_object_reads_and_numeric_frames_equal_the_rdata_package():
    database = package_data("modeldata")
    variables, _ = read_index(database)
    for name in variables:
        read_object(database, name)
    for name in ("crickets", "penguins", "two_class_dat", "ames"):
        mine, theirs = read_object(database, name), oracle(database, name)
        assert list(mine) == list(theirs.columns)
        for column in mine:
            assert_column_equal(mine[column], theirs[column])
    with pytest.raises(KeyError, match="it holds"):
        read_object(database, "no_such_object")

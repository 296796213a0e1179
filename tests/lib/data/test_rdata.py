"""course_lib.data.rdata: the lazy-load database around R's serialized objects (``rdata`` parses those).

Oracles, none of them this module's own output:
- the .rdb entry formats of every compression type, on data compressed here with the
  standard library's compressors, as R's format says;
- the R packages' own files beside the database: the index's entries tile the .rdb exactly,
  the objects are those that ``data/datalist`` and ``INDEX`` (plain text) name, and every
  entry starts the way its compression and R's serialization format say;
- the data sets' content as their documentation and the books say: the novels' opening
  sentences, the reviews' columns and one test review per product;
- the row and class counts that two independent readers found in these package versions:
  rdata, and the hand-written R deserializer that this module held before (see git history).
The tests that need the Debian packages skip, saying why, where they cannot be fetched.
"""
import bz2
import lzma
import struct
import warnings
import zlib

import numpy as np
import pytest

from course_lib.data import assets, austen, reviews
from course_lib.data.rdata import decompress, read_entry, read_index, read_object


def package_data(name):
    try:
        return assets.fetch(name) / "data" / "Rdata"
    except assets.AssetUnavailable as error:
        pytest.skip(f"R package {name} unavailable: {error}")


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
    with pytest.raises(ValueError, match="expected 0, 1, 2 or 3"):
        decompress(entry(DATA), 4)


def test_a_missing_database_names_both_files(tmp_path):
    (tmp_path / "Rdata.rdb").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"Rdata\.rdx not found"):
        read_index(tmp_path / "Rdata")


# --- the index, against the package's own files ------------------------------------------------

def documented_objects(package_dir):
    """The objects that modeldata's data/datalist names: "name" or "file: object object ..."."""
    names = set()
    for line in (package_dir / "data" / "datalist").read_text().splitlines():
        names.update(line.split(":")[1].split() if ":" in line else [line.strip()])
    return names


@pytest.mark.parametrize("package,compressed", [("janeaustenr", 1), ("modeldata", 3)])
def test_the_index_tiles_the_rdb_and_every_entry_is_serialized_r(package, compressed):
    database = package_data(package)
    variables, found = read_index(database)
    assert found == compressed
    spans = sorted(variables.values())
    assert spans[0][0] == 0
    assert all(offset + length == following for (offset, length), (following, _) in zip(spans, spans[1:]))
    assert sum(spans[-1]) == database.with_suffix(".rdb").stat().st_size
    blobs = database.with_suffix(".rdb").read_bytes()
    for name, (offset, length) in variables.items():
        kind = blobs[offset + 4:offset + 5]
        assert kind == b"\x78" if compressed == 1 else kind in (b"Z", b"2", b"1", b"0")  # zlib's header byte
        assert read_entry(database, name)[:2] == b"X\n"  # R's XDR serialization (read_entry checks the length)
    if package == "modeldata":
        assert set(variables) == documented_objects(database.parent.parent)
    with pytest.raises(KeyError, match="it holds"):
        read_entry(database, "no_such_object")


# --- the objects, as rdata converts them ---------------------------------------------------------

OPENINGS = {  # the novels' first sentences, up to a comma
    "sensesensibility": "The family of Dashwood had long been settled in Sussex.",
    "prideprejudice": "It is a truth universally acknowledged, that a single man in possession of a good fortune,",
    "mansfieldpark": "About thirty years ago Miss Maria Ward, of Huntingdon,",
    "emma": "Emma Woodhouse, handsome, clever, and rich,",
    "northangerabbey": "No one who had ever seen Catherine Morland in her infancy would have supposed her born",
    "persuasion": "Sir Walter Elliot, of Kellynch Hall, in Somersetshire,",
}


def test_jane_austen_novels_are_their_books():
    database = package_data("janeaustenr")
    index = " ".join((database.parent.parent / "INDEX").read_text().split())
    assert set(read_index(database)[0]) == set(OPENINGS)
    for title, name in austen.NOVELS:
        assert f"{name} The text of Jane Austen's novel \"{title}\"" in index
        lines = read_object(database, name)
        assert isinstance(lines, np.ndarray) and all(isinstance(line, str) for line in lines)  # one per line
        assert OPENINGS[name] in " ".join(" ".join(lines[:200]).split())
    text = austen.load_text()
    assert text.startswith("SENSE AND SENSIBILITY") and text.endswith("Finis")
    assert len(text) == 4_025_032 and len(set(text)) == 81


def test_modeldata_sentiment_frames():
    database = package_data("modeldata")
    for name, rows, great in (("training_data", 4000, 2600), ("testing_data", 1000, 658)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # rdata is told that tibbles are data frames
            table = read_object(database, name)
        assert list(table.columns) == ["product", "review", "score"] and len(table) == rows
        assert set(table["score"].cat.categories) == {"great", "other"}
        assert (table["score"] == "great").sum() == great
    assert read_object(database, "testing_data")["product"].is_unique  # "a single review ... for each"
    data = reviews.load_fine_food()
    assert (len(data.train), sum(data.train.labels), len(data.test), sum(data.test.labels)) == (4000, 2600, 1000, 658)


def test_every_modeldata_object_converts():
    database = package_data("modeldata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns about classes it has no constructor for (Date), kept raw
        for name in read_index(database)[0]:
            read_object(database, name)

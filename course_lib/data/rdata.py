"""Read data sets out of R packages' lazy-load databases, without R.

Debian packages R's CRAN libraries (``r-cran-janeaustenr``, ``r-cran-modeldata``, ...); their
data sets sit in a *lazy-load database*, two files ``data/Rdata.rdb`` and ``data/Rdata.rdx``:

- the ``.rdx`` is one serialized R list, gzip-compressed: ``variables`` maps each object's
  name to (offset, length) in the ``.rdb``, and ``compressed`` says how the ``.rdb``'s
  entries are compressed (TRUE or 1: zlib, 2: bzip2, 3: xz);
- each entry of the ``.rdb`` is a 4-byte big-endian uncompressed length, then
  for zlib: the zlib stream; for bzip2 and xz: a type byte and the data, where the type byte
  is ``Z`` (a raw LZMA2 stream), ``2`` (bzip2), ``1`` (zlib) or ``0`` (stored as is);
- uncompressed, an entry is one object in R's serialization format.

The ``rdata`` package parses that format and converts the objects (character vectors to
numpy arrays of str, data frames and tibbles to pandas DataFrames, factors to categoricals,
named lists to dicts). What it lacks is the database around them, which this module adds:
``read_index`` reads the ``.rdx``, ``read_entry`` finds and decompresses one object's bytes,
``read_object`` hands them to ``rdata``. ``course_lib.data.assets`` fetches the packages.
"""
from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import rdata

# Tibbles are data frames with two more classes; without these entries rdata warns at every
# tibble before falling back to the data.frame constructor anyway.
_CONSTRUCTORS = {**rdata.conversion.DEFAULT_CLASS_MAP,
                 "tbl_df": rdata.conversion.DEFAULT_CLASS_MAP["data.frame"],
                 "tbl": rdata.conversion.DEFAULT_CLASS_MAP["data.frame"]}


def _convert(data: bytes) -> Any:
    """One serialized R object (gzip-compressed or not) as Python values, by ``rdata``."""
    # ".rds": a lone serialized object, as an .rds file holds; rdata warns when it has to guess.
    return rdata.conversion.convert(rdata.parser.parse_data(data, extension=".rds"), _CONSTRUCTORS)


def decompress(blob: bytes, compressed: int) -> bytes:
    """An entry of an .rdb file, uncompressed; ``compressed`` is the .rdx's field: 0 (none),
    1 (zlib), 2 (bzip2) or 3 (xz)."""
    if compressed == 0:
        return blob
    (length,) = struct.unpack_from(">I", blob)
    if compressed == 1:
        data = zlib.decompress(blob[4:])
    elif compressed in (2, 3):
        kind, body = blob[4:5], blob[5:]
        if kind == b"Z":
            # R's xz is a raw LZMA2 stream, without the .xz container, at preset 9.
            filters = [{"id": lzma.FILTER_LZMA2, "preset": 9}]
            data = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(body)
        elif kind == b"2":
            data = bz2.decompress(body)
        elif kind == b"1":
            data = zlib.decompress(body)
        elif kind == b"0":
            data = body
        else:
            raise ValueError(f"unknown compression type byte {kind!r} in an .rdb entry (expected Z, 2, 1 or 0)")
    else:
        raise ValueError(f"unknown .rdx compression {compressed!r} (expected 0, 1, 2 or 3)")
    if len(data) != length:
        raise ValueError(f"an .rdb entry uncompressed to {len(data)} bytes, its header says {length}")
    return data


def _paths(database: str | Path) -> tuple[Path, Path]:
    stem = Path(database)
    stem = stem.with_suffix("") if stem.suffix in (".rdb", ".rdx") else stem
    rdb, rdx = stem.with_suffix(".rdb"), stem.with_suffix(".rdx")
    for path in (rdb, rdx):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a lazy-load database is a pair NAME.rdb + NAME.rdx")
    return rdb, rdx


def read_index(database: str | Path) -> tuple[dict[str, tuple[int, int]], int]:
    """The objects of a lazy-load database, {name: (offset, length)}, and its compression
    (0 none, 1 zlib, 2 bzip2, 3 xz). ``database`` is ``NAME.rdb``, ``NAME.rdx`` or ``NAME``."""
    _, rdx = _paths(database)
    index = _convert(rdx.read_bytes())
    variables = {str(name): (int(offset), int(length)) for name, (offset, length) in index["variables"].items()}
    return variables, int(np.asarray(index["compressed"]).ravel()[0])


def read_entry(database: str | Path, name: str) -> bytes:
    """The object ``name`` of a lazy-load database in R's serialization format, uncompressed."""
    rdb, _ = _paths(database)
    variables, compressed = read_index(database)
    if name not in variables:
        raise KeyError(f"{name!r} is not in {rdb}; it holds: {', '.join(sorted(variables))}")
    offset, length = variables[name]
    with rdb.open("rb") as f:
        f.seek(offset)
        blob = f.read(length)
    return decompress(blob, compressed)


def read_object(database: str | Path, name: str) -> Any:
    """The object ``name`` of a lazy-load database as ``rdata`` converts it: a character vector
    as a numpy array of str, a data frame as a pandas DataFrame, a named list as a dict.

    >>> read_object(assets.fetch("janeaustenr") / "data" / "Rdata", "emma")[:2]
    array(['EMMA', ''], dtype='<U74')
    """
    return _convert(read_entry(database, name))

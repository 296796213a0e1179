"""Read data sets out of R packages, with the standard library and numpy only (introduced in notebook 08_gpt).

Debian packages R's CRAN libraries (``r-cran-janeaustenr``, ``r-cran-modeldata``, ...); their
data sets sit in a *lazy-load database*, two files ``data/Rdata.rdb`` and ``data/Rdata.rdx``:

- the ``.rdx`` is a gzip file holding one serialized R list: ``variables`` maps each object's
  name to (offset, length) in the ``.rdb``, and ``compressed`` says how the ``.rdb``'s
  entries are compressed (TRUE or 1: zlib, 2: bzip2, 3: xz);
- each entry of the ``.rdb`` is a 4-byte big-endian uncompressed length, then
  for zlib: the zlib stream; for bzip2 and xz: a type byte and the data, where the type byte
  is ``Z`` (a raw LZMA2 stream), ``2`` (bzip2), ``1`` (zlib) or ``0`` (stored as is);
- uncompressed, an entry is one object in R's serialization format (``X\\n``: XDR, big-endian).

``course_lib.data.assets`` fetches the Debian packages; ``read_object`` reads one object by
name from the database and ``to_python`` turns it into
Python values (character vectors -> lists of str, numbers -> numpy arrays, factors -> lists
of labels, data frames and named lists -> dicts). ``parse`` gives the raw ``RObject`` tree.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# SEXP types (R's Rinternals.h) and the pseudo-types that only occur in serialized data (serialize.c).
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP, SPECIALSXP, BUILTINSXP, CHARSXP = range(10)
LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 10, 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = 19, 20, 21, 22, 23, 24, 25
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 253, 252, 251
BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP, PERSISTSXP = 250, 249, 248, 247
EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 242, 241, 240, 239, 238

NA_INTEGER = -(2 ** 31)
_PAIRLISTS = {LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP}
_SPECIAL_VALUES = {NILVALUE_SXP: None, GLOBALENV_SXP: "<globalenv>", UNBOUNDVALUE_SXP: "<unbound>",
                   MISSINGARG_SXP: "<missing>", BASENAMESPACE_SXP: "<base namespace>",
                   EMPTYENV_SXP: "<emptyenv>", BASEENV_SXP: "<baseenv>"}
_NUMERIC = {LGLSXP: ">i4", INTSXP: ">i4", REALSXP: ">f8", CPLXSXP: ">c16"}
_UTF8, _LATIN1 = 1 << 3, 1 << 2


@dataclass
class RObject:
    """One R value as serialized: its SEXP ``type``, its ``value`` and its ``attributes``
    (introduced in notebook 08_gpt).

    ``value`` is a numpy array for logical, integer, double and complex vectors (NA kept as
    R stores it: INT_MIN for integers and logicals, a NaN for doubles); a list of ``str``
    (None for NA) for character vectors; a list of RObject for lists; a list of
    (tag, RObject) pairs for pairlists; a ``str`` for symbols; ``bytes`` for raw vectors.
    """

    type: int
    value: Any = None
    attributes: dict[str, "RObject"] = field(default_factory=dict)

    def attr(self, name: str) -> Any:
        """The attribute ``name`` as Python values (``to_python``), or None if absent."""
        return to_python(self.attributes[name]) if name in self.attributes else None


class _Reader:
    """R's unserialize for the XDR format (src/main/serialize.c, ReadItem)."""

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise ValueError(f"not R's XDR serialization format: starts with {data[:2]!r}, expected b'X\\n'")
        self.data, self.pos, self.refs = data, 2, []
        version, _writer, _min_reader = self.ints(3)
        if version == 3:
            self.bytes(self.int())  # the writer's native encoding, e.g. "UTF-8": strings carry their own
        elif version != 2:
            raise ValueError(f"R serialization format version {version} is not supported (2 and 3 are)")

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def ints(self, n: int) -> tuple[int, ...]:
        values = struct.unpack_from(f">{n}i", self.data, self.pos)
        self.pos += 4 * n
        return values

    def length(self) -> int:
        n = self.int()
        if n == -1:  # a long vector: the length follows as two 32-bit halves
            upper, lower = self.ints(2)
            n = (upper << 32) + (lower & 0xFFFFFFFF)
        return n

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def string_vector(self) -> list[str | None]:
        self.int()  # always 0
        return [self.item().value for _ in range(self.length())]

    def item(self) -> RObject:
        flags = self.int()
        kind, levels = flags & 0xFF, flags >> 12
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in _SPECIAL_VALUES:
            return RObject(kind, _SPECIAL_VALUES[kind])
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind in (PERSISTSXP, NAMESPACESXP, PACKAGESXP):
            obj = RObject(kind, self.string_vector())
            self.refs.append(obj)
            return obj
        if kind == SYMSXP:
            obj = RObject(kind, self.item().value)
            self.refs.append(obj)
            return obj
        if kind == ENVSXP:
            obj = RObject(kind, {})
            self.refs.append(obj)  # before its contents, which may refer back to it
            self.int()  # locked
            enclosure, frame, hashtab, attributes = self.item(), self.item(), self.item(), self.item()
            obj.value = {"enclosure": enclosure, "frame": frame, "hashtab": hashtab}
            obj.attributes = _attribute_dict(attributes)
            return obj
        if kind in _PAIRLISTS:
            return self.pairlist(kind, has_attr, has_tag)
        if kind == ALTREP_SXP:
            return self.altrep()
        if kind == CHARSXP:
            n = self.int()
            if n == -1:
                return RObject(kind, None)  # NA_character_
            raw = self.bytes(n)
            return RObject(kind, raw.decode("latin-1" if levels & _LATIN1 else "utf-8", errors="replace"))
        if kind in _NUMERIC:
            n = self.length()
            dtype = np.dtype(_NUMERIC[kind])
            value = np.frombuffer(self.bytes(n * dtype.itemsize), dtype=dtype).astype(dtype.newbyteorder("="))
            obj = RObject(kind, value)
        elif kind in (STRSXP, VECSXP, EXPRSXP):
            obj = RObject(kind, [self.item() if kind != STRSXP else self.item().value for _ in range(self.length())])
        elif kind == RAWSXP:
            obj = RObject(kind, self.bytes(self.length()))
        elif kind in (SPECIALSXP, BUILTINSXP):
            obj = RObject(kind, self.bytes(self.int()).decode())
        elif kind == S4SXP:
            obj = RObject(kind)
        elif kind in (EXTPTRSXP, WEAKREFSXP):
            obj = RObject(kind)
            self.refs.append(obj)
            if kind == EXTPTRSXP:
                obj.value = (self.item(), self.item())  # protected value, tag
        else:
            raise ValueError(f"cannot read R objects of SEXP type {kind} (byte code or unknown) "
                             f"at byte {self.pos - 4}; only data objects are supported")
        if has_attr:
            obj.attributes = _attribute_dict(self.item())
        return obj

    def pairlist(self, kind: int, has_attr: bool, has_tag: bool) -> RObject:
        attributes = _attribute_dict(self.item()) if has_attr else {}
        tag = self.item().value if has_tag else None
        items = [(tag, self.item())]
        # The tail is read in a loop, not recursively: a long pairlist would exhaust the stack.
        while True:
            flags = self.int()
            tail_kind = flags & 0xFF
            if tail_kind not in _PAIRLISTS:
                self.pos -= 4
                tail = self.item()
                if tail.type != NILVALUE_SXP:
                    items.append((None, tail))  # a dotted pair's last cdr
                break
            if flags & (1 << 9):
                self.item()  # attributes of an inner cell: R never sets them on data
            tag = self.item().value if flags & (1 << 10) else None
            items.append((tag, self.item()))
        return RObject(kind, items, attributes)

    def altrep(self) -> RObject:
        """A compact or wrapped vector (R >= 3.5): rebuilt as the ordinary vector it stands for."""
        info, state, attributes = self.item(), self.item(), self.item()
        class_name = info.value[0][1].value
        if class_name in ("compact_intseq", "compact_realseq"):
            n, start, step = (float(x) for x in state.value)
            kind = INTSXP if class_name == "compact_intseq" else REALSXP
            value = start + step * np.arange(int(n))
            obj = RObject(kind, value.astype(np.int32 if kind == INTSXP else np.float64))
        elif class_name.startswith("wrap_"):
            obj = state.value[0]  # list(the wrapped vector, metadata)
        elif class_name == "deferred_string":
            numbers = state.value[0][1]  # turned into strings on demand, as as.character does
            obj = RObject(STRSXP, [f"{x:.15g}" for x in numbers.value.tolist()])
        else:
            raise ValueError(f"cannot read the ALTREP class {class_name!r}")
        if attributes.type != NILVALUE_SXP:
            obj.attributes = _attribute_dict(attributes)
        return obj


def _attribute_dict(pairlist: RObject) -> dict[str, RObject]:
    return {} if pairlist.type == NILVALUE_SXP else {tag: value for tag, value in pairlist.value}


def parse(data: bytes) -> RObject:
    """One serialized R object (``serialize()``, format ``X\\n`` version 2 or 3) as an RObject tree
    (introduced in notebook 08_gpt)."""
    return _Reader(data).item()


def decompress(blob: bytes, compressed: int) -> bytes:
    """An entry of an .rdb file, uncompressed; ``compressed`` is the .rdx's field: 0 (none),
    1 (zlib), 2 (bzip2) or 3 (xz) (introduced in notebook 08_gpt)."""
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
    (0 none, 1 zlib, 2 bzip2, 3 xz). ``database`` is ``NAME.rdb``, ``NAME.rdx`` or ``NAME``
    (introduced in notebook 08_gpt)."""
    _, rdx = _paths(database)
    index = to_python(parse(gzip.decompress(rdx.read_bytes())))
    variables = {name: (int(offset), int(length)) for name, (offset, length) in index["variables"].items()}
    return variables, int(np.asarray(index["compressed"]).ravel()[0])


def read_raw(database: str | Path, name: str) -> RObject:
    """The object ``name`` of a lazy-load database as an RObject tree (introduced in notebook 08_gpt)."""
    rdb, _ = _paths(database)
    variables, compressed = read_index(database)
    if name not in variables:
        raise KeyError(f"{name!r} is not in {rdb}; it holds: {', '.join(sorted(variables))}")
    offset, length = variables[name]
    with rdb.open("rb") as f:
        f.seek(offset)
        blob = f.read(length)
    return parse(decompress(blob, compressed))


def read_object(database: str | Path, name: str) -> Any:
    """The object ``name`` of a lazy-load database, as Python values (``to_python``)
    (introduced in notebook 08_gpt).

    >>> read_object(assets.fetch("janeaustenr") / "data" / "Rdata", "emma")[:2]
    ['EMMA', '']
    """
    return to_python(read_raw(database, name))


def _atomic(obj: RObject) -> Any:
    value = obj.value
    if obj.type in (LGLSXP, INTSXP):
        na = value == NA_INTEGER
        if obj.type == LGLSXP and not na.any():
            return value.astype(bool)
        return np.where(na, np.nan, value) if na.any() else value  # NA as NaN, as pandas does
    return value


def to_python(obj: RObject) -> Any:
    """Python values for an RObject (introduced in notebook 08_gpt):

    - NULL -> None; a character vector -> list of str (None for NA); a symbol -> str;
    - logical, integer, double, complex vectors -> numpy arrays (bool, int32, float64,
      complex128; a logical or integer vector with NA becomes float64 with NaN there);
    - a factor -> list of its labels (None for NA);
    - a data frame (also a tibble) -> {column: values}; a list or pairlist with names ->
      {name: value}, without names -> list;
    - anything else (environments, functions) -> the RObject itself.
    Other attributes are dropped: ``RObject.attributes`` keeps them.
    """
    classes = obj.attr("class") or []
    if obj.type == NILVALUE_SXP:
        return None
    if obj.type in (STRSXP, SYMSXP, CHARSXP, RAWSXP):
        return obj.value
    if obj.type == INTSXP and "factor" in classes:
        levels = obj.attr("levels")
        return [None if code == NA_INTEGER else levels[code - 1] for code in obj.value.tolist()]
    if obj.type in _NUMERIC:
        return _atomic(obj)
    if obj.type in (VECSXP, EXPRSXP):
        values = [to_python(item) for item in obj.value]
        names = obj.attr("names")
        return dict(zip(names, values)) if names is not None else values
    if obj.type == LISTSXP:
        values = [(tag, to_python(item)) for tag, item in obj.value]
        return dict(values) if all(tag is not None for tag, _ in values) else [v for _, v in values]
    return obj

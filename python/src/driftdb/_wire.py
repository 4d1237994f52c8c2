"""Protobuf wire encoding of the hot ingest fields, written by hand.

Batches are columnar (``driftdb.v1.InferenceBatch``), and building them through generated
message classes costs a Python-to-C conversion per value. Packed doubles are the raw
little-endian bytes of a double array, so numeric columns are encoded with one
``array('d', ...)`` (rows path) or one ``ndarray.tobytes()`` (frames path); strings of
low-cardinality columns are encoded once per distinct value. Parts are concatenated: protobuf
parsers accept fields in any order and append repeated fields as they come.
"""

from __future__ import annotations

import sys
from array import array
from typing import Iterable, List, Sequence

_LITTLE = sys.byteorder == "little"

# Tags (field number << 3 | wire type) of the fields written here. Wire type 2: length-delimited.
# A tag is itself a varint: fields 1-15 take one byte, fields 16-2047 two, so tags are written
# with ``_tag`` (``field``, ``string_record``), never as one raw byte.
# InferenceBatch
T_SEGMENTS = 0x3A  # 7
T_FEATURES = 0x42  # 8
T_SCORES = 0x4A  # 9
T_SCORE_MISSING = 0x52  # 10
T_LATENCY = 0x5A  # 11
T_ITEMS = 0x62  # 12
T_LABELS = 0x6A  # 13
T_LABEL_MISSING = 0x72  # 14
T_COST = 0x7A  # 15
T_ATTRIBUTIONS = 0x82  # 16: 130, written as the two bytes 0x82 0x01
# FeatureColumn
T_F_NAME = 0x0A  # 1
T_F_NUMBERS = 0x12  # 2
T_F_CATEGORIES = 0x1A  # 3
T_F_MISSING = 0x22  # 4
T_F_DICTIONARY = 0x2A  # 5
T_F_CODES = 0x32  # 6
# SegmentColumn
T_S_KEY = 0x0A  # 1
T_S_VALUES = 0x12  # 2
# ReferenceChunk
T_CHUNK_HEADER = 0x0A  # 1
T_CHUNK_ROWS = 0x12  # 2

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """Base-128 varint of a non-negative int."""
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(tag: int) -> bytes:
    """A tag's bytes: the precomputed byte below 128, a varint above."""
    return _SMALL[tag] if tag < 128 else varint(tag)


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _tag(tag) + varint(len(payload)) + payload


def packed_varints(values: Iterable[int]) -> bytes:
    """The payload of a packed uint32/uint64 field."""
    return b"".join(map(varint, values))


def string_record(tag: int, s: str) -> bytes:
    """One element of a repeated string field."""
    b = s.encode("utf-8")
    return _tag(tag) + varint(len(b)) + b


def doubles_bytes(a: array) -> bytes:
    """Little-endian bytes of a double array (a packed double payload)."""
    if not _LITTLE:
        a = array("d", a)
        a.byteswap()
    return a.tobytes()


_NAN = float("nan")


def numbers(values: Sequence) -> "tuple[array, List[int]]":
    """Doubles of a numeric column and the rows that are missing (``None``, NaN, or not a
    number). Missing rows hold 0.0, as the server expects with their index listed."""
    try:
        a = array("d", values)
    except (TypeError, ValueError, OverflowError):
        a = None
    if a is not None:
        try:
            total = sum(a)
        except OverflowError:
            total = _NAN
        if total == total and total not in (float("inf"), float("-inf")):
            return a, []
    # Slow path: some value is None, NaN, infinite (kept: the server counts it invalid) or not
    # a float at all.
    out = array("d")
    missing: List[int] = []
    append = out.append
    for i, v in enumerate(values):
        if v is None:
            missing.append(i)
            append(0.0)
            continue
        try:
            x = float(v)
        except (TypeError, ValueError, OverflowError):
            x = _NAN
        if x != x:
            missing.append(i)
            x = 0.0
        append(x)
    return out, missing


def category_text(v: object) -> "str | None":
    """The category string of a categorical value, or ``None`` for a missing one: booleans
    are ``"true"``/``"false"`` (as in the server's JSON files), ``None``, NaN and ``""`` are
    missing, anything else is ``str(v)``."""
    if v is None:
        return None
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v or None
    if isinstance(v, float) and v != v:
        return None
    t = type(v).__name__
    if t == "bool_":  # numpy.bool_
        return "true" if v else "false"
    if t in ("NAType", "NaTType"):
        return None
    return str(v)


class StringColumnEncoder:
    """Encodes repeated-string columns with a cache of each distinct value's record.

    ``encode(values)`` returns (concatenated records, missing rows); a missing value is written
    as the empty string. The cache is per tag and bounded (cleared past ``limit`` entries), so
    high-cardinality columns only cost the per-value encode.
    """

    __slots__ = ("_tag", "_cache", "_limit", "_empty")

    def __init__(self, tag: int, limit: int = 50_000) -> None:
        self._tag = tag
        self._limit = limit
        self._empty = _tag(tag) + b"\x00"
        self._cache: dict = {}
        self._reset()

    def _reset(self) -> None:
        self._cache = {None: None, "": None}

    def encode(self, values: Sequence) -> "tuple[bytes, List[int]]":
        types = set(map(type, values))
        if not types <= {str, type(None)}:
            values = [category_text(v) for v in values]
        cache = self._cache
        if len(cache) > self._limit:
            self._reset()
            cache = self._cache
        try:
            recs = list(map(cache.__getitem__, values))
        except KeyError:
            tag = self._tag
            for v in set(values):
                if v not in cache:
                    cache[v] = string_record(tag, v)
            recs = list(map(cache.__getitem__, values))
        missing: List[int] = []
        if None in recs:
            empty = self._empty
            missing = [i for i, r in enumerate(recs) if r is None]
            for i in missing:
                recs[i] = empty
        return b"".join(recs), missing


def numeric_feature(name_field: bytes, values: Sequence) -> bytes:
    """A ``FeatureColumn`` record (tag included) of a numeric feature."""
    a, missing = numbers(values)
    raw = doubles_bytes(a)
    body = [name_field, _SMALL[T_F_NUMBERS], varint(len(raw)), raw]
    if missing:
        m = packed_varints(missing)
        body += [_SMALL[T_F_MISSING], varint(len(m)), m]
    payload = b"".join(body)
    return _SMALL[T_FEATURES] + varint(len(payload)) + payload


def categorical_feature(name_field: bytes, values: Sequence, enc: StringColumnEncoder) -> bytes:
    """A ``FeatureColumn`` record (tag included) of a categorical feature."""
    recs, missing = enc.encode(values)
    body = [name_field, recs]
    if missing:
        m = packed_varints(missing)
        body += [_SMALL[T_F_MISSING], varint(len(m)), m]
    payload = b"".join(body)
    return _SMALL[T_FEATURES] + varint(len(payload)) + payload


def attribution_column(name_field: bytes, values: Sequence) -> bytes:
    """A ``FeatureColumn`` record (``InferenceBatch.attributions`` tag included) of one
    feature's attributions, or ``b""`` when every row is missing (``None``, NaN, not a number):
    such a column is not sent."""
    a, missing = numbers(values)
    if len(missing) == len(a):
        return b""
    body = [name_field, field(T_F_NUMBERS, doubles_bytes(a))]
    if missing:
        body.append(field(T_F_MISSING, packed_varints(missing)))
    return field(T_ATTRIBUTIONS, b"".join(body))


def segment_column(key_field: bytes, values: Sequence, enc: StringColumnEncoder) -> bytes:
    """A ``SegmentColumn`` record (tag included); missing values are ``""`` (absent)."""
    recs, _ = enc.encode(values)
    payload = key_field + recs
    return _SMALL[T_SEGMENTS] + varint(len(payload)) + payload


def doubles_field(tag: int, missing_tag: int, values: Sequence) -> bytes:
    """A packed double field plus, when some rows are missing, its packed missing-row list."""
    a, missing = numbers(values)
    out = field(tag, doubles_bytes(a))
    if missing:
        out += field(missing_tag, packed_varints(missing))
    return out

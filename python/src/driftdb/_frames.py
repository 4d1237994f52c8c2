"""Batches from tables: pandas DataFrames, pyarrow Tables / RecordBatches, and mappings of
numpy arrays (or lists), converted column by column with numpy, never row by row.

Each column the model needs is normalised once for the whole table:

- numeric features, scores, latencies, costs, labels, attributions (``attr.<feature>``
  columns): a float64 array, NaN where missing (``None``, NaN, pandas NA/NaT; booleans become
  1.0/0.0);
- categorical features and segments: integer codes (-1 = missing) into a list of category
  strings (booleans are ``"true"``/``"false"`` as in the server's JSON files, ``""`` is missing);
- request ids: Python strings; event times: int64 milliseconds since the epoch.

Batches are then slices of those arrays, written straight to protobuf wire format
(``_wire``): a numeric column is one ``tobytes()``; a categorical feature is sent
dictionary-encoded (its categories once, then one varint code per row); a segment column is one
``b"".join`` of pre-encoded records picked by its codes.
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _wire as w
from ._models import Schema
from ._proto.driftdb.v1 import ingest_pb2
from ._timeconv import now_ms, to_ms

log = logging.getLogger("driftdb")

_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
# Columns named `attr.<feature>` hold that feature's attributions (e.g. SHAP values).
ATTR_PREFIX = "attr."


def np_varints(values: Any) -> bytes:
    """Packed varint payload of non-negative (or int64, two's complement) integers."""
    v = np.asarray(values)
    if v.size == 0:
        return b""
    v = v.astype(np.uint64, copy=False)
    mx = int(v.max())
    if mx < 128:
        return v.astype(np.uint8).tobytes()
    width = (mx.bit_length() + 6) // 7
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = ((v[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    nbytes = np.ones(v.shape[0], dtype=np.int64)
    for j in range(1, width):
        nbytes += v >= (np.uint64(1) << np.uint64(7 * j))
    cols = np.arange(width)[None, :]
    groups |= (cols < (nbytes[:, None] - 1)).astype(np.uint8) << np.uint8(7)
    return groups[cols < nbytes[:, None]].tobytes()


def _le_bytes(a: np.ndarray) -> bytes:
    return a.astype("<f8", copy=False).tobytes()


# ---------------------------------------------------------------------------------------------
# Column access


def _kind(data: Any) -> str:
    mod = type(data).__module__ or ""
    if mod.startswith("pandas"):
        return "pandas"
    if mod.startswith("pyarrow"):
        return "arrow"
    if isinstance(data, Mapping):
        return "mapping"
    raise TypeError(
        "expected a pandas DataFrame, a pyarrow Table or RecordBatch, or a mapping of column "
        f"name to numpy array / list; got {type(data).__name__}"
    )


class Frame:
    """Uniform, column-wise access to a table."""

    def __init__(self, data: Any) -> None:
        self.kind = _kind(data)
        self.data = data
        if self.kind == "pandas":
            if not hasattr(data, "columns"):
                raise TypeError("a pandas Series is not a table; pass a DataFrame")
            self.names = [str(c) for c in data.columns]
            self._by_name = {str(c): c for c in data.columns}
            self.n = len(data)
        elif self.kind == "arrow":
            self.names = list(data.schema.names)
            self._by_name = {n: n for n in self.names}
            self.n = data.num_rows
        else:
            self.names = [str(k) for k in data.keys()]
            self._by_name = {str(k): k for k in data.keys()}
            lens = {len(v) for v in data.values()}
            if len(lens) > 1:
                raise ValueError(f"columns of different lengths: {sorted(lens)}")
            self.n = lens.pop() if lens else 0

    def has(self, name: Optional[str]) -> bool:
        return name is not None and name in self._by_name

    def _col(self, name: str) -> Any:
        key = self._by_name[name]
        if self.kind == "pandas":
            return self.data[key]
        if self.kind == "arrow":
            return self.data.column(key)
        return self.data[key]

    # -- numbers ----------------------------------------------------------------------------------

    def numeric(self, name: str) -> np.ndarray:
        col = self._col(name)
        if self.kind == "pandas":
            return _pandas_numeric(col)
        if self.kind == "arrow":
            return _arrow_numeric(col)
        return _array_numeric(col)

    # -- categories -------------------------------------------------------------------------------

    def categorical(self, name: str) -> Tuple[np.ndarray, List[Optional[str]]]:
        col = self._col(name)
        if self.kind == "pandas":
            codes, labels = _pandas_categorical(col)
        elif self.kind == "arrow":
            codes, labels = _arrow_categorical(col)
        else:
            codes, labels = _array_categorical(col)
        return _drop_empty(codes, labels)

    # -- strings ----------------------------------------------------------------------------------

    def strings(self, name: str) -> List[str]:
        col = self._col(name)
        if self.kind == "pandas":
            vals = col.tolist()
        elif self.kind == "arrow":
            vals = col.to_pylist()
        else:
            vals = col.tolist() if hasattr(col, "tolist") else list(col)
        if set(map(type, vals)) == {str}:
            return vals
        return ["" if _is_missing(v) else str(v) for v in vals]

    # -- times ------------------------------------------------------------------------------------

    def times_ms(self, name: str, unit: str = "ms") -> np.ndarray:
        col = self._col(name)
        if self.kind == "pandas":
            out = _pandas_times(col, unit)
        elif self.kind == "arrow":
            out = _arrow_times(col, unit)
        else:
            out = _array_times(col, unit)
        bad = out == np.iinfo(np.int64).min
        if bad.any():
            out = np.where(bad, now_ms(), out)
        return out


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and v != v:
        return True
    return type(v).__name__ in ("NAType", "NaTType")


def _drop_empty(
    codes: np.ndarray, labels: List[Optional[str]]
) -> Tuple[np.ndarray, List[Optional[str]]]:
    """Codes of labels that are missing (``None``: an empty string, NaN) become -1."""
    codes = np.asarray(codes, dtype=np.int64)
    bad = [i for i, lab in enumerate(labels) if lab is None]
    if bad:
        codes = np.where(np.isin(codes, bad), -1, codes)
    return codes, labels


def _labels(values: Sequence[Any]) -> List[Optional[str]]:
    return [w.category_text(v) for v in values]


# pandas ---------------------------------------------------------------------------------------


def _pandas_numeric(s: Any) -> np.ndarray:
    import pandas as pd

    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = _array_numeric(np.asarray(s.cat.categories, dtype=object))
        codes = s.cat.codes.to_numpy()
        return np.where(codes >= 0, cats[codes], np.nan)
    try:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _pandas_categorical(s: Any) -> Tuple[np.ndarray, List[Optional[str]]]:
    import pandas as pd

    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(), _labels(list(s.cat.categories))
    if dt == np.bool_:
        return s.to_numpy(dtype=np.int64), ["false", "true"]
    codes, uniques = pd.factorize(s)
    return codes, _labels(list(uniques))


def _pandas_times(s: Any, unit: str) -> np.ndarray:
    import pandas as pd

    dt = s.dtype
    if pd.api.types.is_datetime64_any_dtype(dt):
        if getattr(dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return _datetime64_ms(s.to_numpy())
    if pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt):
        return _numbers_ms(s.to_numpy(dtype=np.float64, na_value=np.nan), unit)
    try:
        parsed = pd.to_datetime(s, utc=True, format="ISO8601")
    except (TypeError, ValueError):
        return _objects_ms(s.tolist(), unit)
    return _datetime64_ms(parsed.dt.tz_localize(None).to_numpy())


# arrow ----------------------------------------------------------------------------------------


def _arrow_array(col: Any) -> Any:
    """One contiguous pyarrow Array of a column (ChunkedArray or Array)."""
    if hasattr(col, "combine_chunks"):
        return col.combine_chunks()
    return col


def _arrow_numeric(col: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow_array(col)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    try:
        arr = pc.cast(arr, pa.float64(), safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _array_numeric(np.asarray(arr.to_pylist(), dtype=object))
    arr = pc.fill_null(arr, np.nan)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def _arrow_categorical(col: Any) -> Tuple[np.ndarray, List[Optional[str]]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow_array(col)
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.string())  # "true" / "false"
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    idx = pc.fill_null(arr.indices, -1)
    codes = np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, _labels(arr.dictionary.to_pylist())


def _arrow_times(col: Any, unit: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow_array(col)
    t = arr.type
    if pa.types.is_timestamp(t):
        arr = pc.cast(arr, pa.timestamp("ms", tz=t.tz), safe=False)
        ints = pc.fill_null(arr.cast(pa.int64()), np.iinfo(np.int64).min)
        return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_date(t):
        arr = pc.cast(arr, pa.timestamp("ms"))
        ints = pc.fill_null(arr.cast(pa.int64()), np.iinfo(np.int64).min)
        return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _numbers_ms(_arrow_numeric(arr), unit)
    return _objects_ms(arr.to_pylist(), unit)


# numpy / lists --------------------------------------------------------------------------------


def _array_numeric(col: Any) -> np.ndarray:
    a = np.asarray(col)
    if a.dtype.kind in "fiub":
        return a.astype(np.float64, copy=False)
    out = np.empty(len(a), dtype=np.float64)
    for i, v in enumerate(a.tolist()):
        if _is_missing(v):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


def _array_categorical(col: Any) -> Tuple[np.ndarray, List[Optional[str]]]:
    a = np.asarray(col)
    if a.dtype == np.bool_:
        return a.astype(np.int64), ["false", "true"]
    if a.dtype.kind in "iuU":
        uniques, codes = np.unique(a, return_inverse=True)
        return codes.reshape(-1), _labels(uniques.tolist())
    table: Dict[Any, int] = {}
    labels: List[Optional[str]] = []
    codes = np.empty(len(a), dtype=np.int64)
    for i, v in enumerate(a.tolist()):
        text = w.category_text(v)
        if text is None:
            codes[i] = -1
            continue
        c = table.get(text)
        if c is None:
            c = table[text] = len(labels)
            labels.append(text)
        codes[i] = c
    return codes, labels


def _array_times(col: Any, unit: str) -> np.ndarray:
    a = np.asarray(col)
    if a.dtype.kind == "M":
        return _datetime64_ms(a)
    if a.dtype.kind in "fiu":
        return _numbers_ms(a.astype(np.float64), unit)
    return _objects_ms(a.tolist(), unit)


def _datetime64_ms(a: np.ndarray) -> np.ndarray:
    nat = np.isnat(a)
    ms = a.astype("datetime64[ms]").astype(np.int64)
    if nat.any():
        ms[nat] = np.iinfo(np.int64).min
    return ms


def _numbers_ms(a: np.ndarray, unit: str) -> np.ndarray:
    if unit not in _UNITS:
        raise ValueError(f"ts_unit must be one of {sorted(_UNITS)}, got {unit!r}")
    nan = np.isnan(a)
    ms = np.round(np.where(nan, 0.0, a) * _UNITS[unit]).astype(np.int64)
    if nan.any():
        ms[nan] = np.iinfo(np.int64).min
    return ms


def _objects_ms(values: List[Any], unit: str) -> np.ndarray:
    factor = _UNITS[unit]
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if _is_missing(v):
            out[i] = np.iinfo(np.int64).min
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = round(v * factor)
        elif isinstance(v, _dt.datetime) or isinstance(v, str):
            out[i] = to_ms(v)
        else:
            out[i] = to_ms(v)
    return out


# ---------------------------------------------------------------------------------------------
# Encoding


class _Strings:
    """A categorical column: codes and the encoded record of each category (+ one for
    missing, at index -1)."""

    __slots__ = ("codes", "records", "has_missing")

    def __init__(self, codes: np.ndarray, labels: List[Optional[str]], tag: int) -> None:
        recs = [w.string_record(tag, lab) if lab is not None else b"" for lab in labels]
        recs.append(w.varint(tag) + b"\x00")  # "" for a missing row (codes of -1)
        self.records = np.array(recs + [b""], dtype=object)[:-1]
        self.codes = codes
        self.has_missing = bool((codes < 0).any())

    def encode(self, a: int, b: int) -> Tuple[bytes, Optional[np.ndarray]]:
        c = self.codes[a:b]
        data = b"".join(self.records[c].tolist())
        missing = np.flatnonzero(c < 0) if self.has_missing else None
        return data, missing


class _Coded:
    """A categorical feature sent dictionary-encoded (``FeatureColumn.dictionary`` + ``codes``):
    per batch, the values it uses once each and one packed varint code per row."""

    __slots__ = ("codes", "records", "none")

    def __init__(self, codes: np.ndarray, labels: List[Optional[str]]) -> None:
        # The encoded dictionary record of each label; a None label counts as missing.
        self.records = [w.string_record(w.T_F_DICTIONARY, lab or "") for lab in labels]
        self.none = np.array([lab is None for lab in labels] + [True], dtype=bool)
        self.codes = codes

    def encode(self, a: int, b: int) -> bytes:
        c = np.asarray(self.codes[a:b], dtype=np.int64)
        missing = self.none[c]  # code -1 is the trailing True
        n_labels = len(self.records)
        if n_labels <= max(256, b - a):
            # Small dictionary: all of it, codes as they are.
            dictionary = b"".join(self.records)
            codes = np.where(missing, 0, c)
        else:
            # Large one: only the values this batch uses, renumbered.
            used, codes = np.unique(np.where(missing, 0, c), return_inverse=True)
            dictionary = b"".join(self.records[i] for i in used.tolist())
        body = [dictionary, w.field(w.T_F_CODES, np_varints(codes))]
        if missing.any():
            body.append(w.field(w.T_F_MISSING, np_varints(np.flatnonzero(missing))))
        return b"".join(body)


def _doubles_and_missing(x: np.ndarray) -> Tuple[bytes, Optional[np.ndarray]]:
    nan = np.isnan(x)
    if nan.any():
        return _le_bytes(np.where(nan, 0.0, x)), np.flatnonzero(nan)
    return _le_bytes(x), None


class FrameEncoder:
    """Encodes row ranges of a table as ``InferenceBatch`` bytes for one model."""

    def __init__(
        self,
        schema: Schema,
        frame: Frame,
        *,
        version: Optional[str],
        columns: Optional[Mapping[str, str]] = None,
        attributions: Optional[Mapping[str, str]] = None,
        ts_unit: str = "ms",
        with_labels: bool = False,
        request_ids_required: bool = True,
    ) -> None:
        cols = dict(columns or {})
        attrs = dict(attributions or {})
        names = set(frame.names)
        features = set(schema.numeric) | set(schema.categorical)
        # `cost` is the event's serving cost unless the model has a feature of that name.
        send_cost = "cost" not in features
        known = (
            features
            | set(schema.segments)
            | {"request_id", "ts", "model_version", "score", "prediction", "latency_ms", "label"}
            | {"cost"}
            | {ATTR_PREFIX + f for f in features}
        )
        unknown = set(cols) - known
        if unknown:
            raise ValueError(
                f"columns maps {sorted(unknown)}, which are neither features nor segment keys of "
                f"model {schema.model_id!r} nor request_id/ts/model_version/score/prediction/"
                "latency_ms/cost/label/attr.<feature>"
            )
        for k, v in cols.items():
            if v not in names:
                raise ValueError(f"columns maps {k!r} to {v!r}, which is not a column")
        bad = set(attrs) - features
        if bad:
            raise ValueError(
                f"attributions name {sorted(bad)}, which are not features of model "
                f"{schema.model_id!r} (its features: {sorted(features)})"
            )
        for k, v in attrs.items():
            if v not in names:
                raise ValueError(f"attributions maps {k!r} to {v!r}, which is not a column")

        def col(name: str) -> Optional[str]:
            c = cols.get(name, name)
            return c if c in names else None

        self.schema = schema
        self.n = frame.n
        rid = col("request_id")
        if rid is not None:
            self.request_ids = frame.strings(rid)
        elif request_ids_required:
            raise ValueError(
                "the table has no request_id column (map one with columns={'request_id': ...})"
            )
        else:
            self.request_ids = [f"ref-{i}" for i in range(frame.n)]
        ts = col("ts")
        self.ts = (
            frame.times_ms(ts, ts_unit) if ts is not None else np.full(frame.n, now_ms(), np.int64)
        )
        vcol = col("model_version")
        if version:
            self.versions: Optional[List[str]] = None
            self.version = version
        elif vcol is not None:
            self.versions = frame.strings(vcol)
            self.version = ""
        else:
            raise ValueError("pass version=... or give the table a model_version column")
        score = col("score") or col("prediction")
        self.scores = frame.numeric(score) if score is not None else None
        lat = col("latency_ms")
        self.latency = frame.numeric(lat) if lat is not None else None
        cost = col("cost") if send_cost else None
        self.cost = frame.numeric(cost) if cost is not None else None
        lab = col("label") if with_labels else None
        self.labels = frame.numeric(lab) if lab is not None else None
        self.numeric: List[Tuple[bytes, np.ndarray]] = []
        self.categorical: List[Tuple[bytes, _Coded]] = []
        self.segments: List[Tuple[bytes, _Strings]] = []
        self.attributions: List[Tuple[bytes, np.ndarray]] = []
        for f in schema.numeric:
            c = col(f)
            if c is not None:
                self.numeric.append((w.field(w.T_F_NAME, f.encode()), frame.numeric(c)))
        for f in schema.categorical:
            c = col(f)
            if c is not None:
                codes, labels = frame.categorical(c)
                self.categorical.append((w.field(w.T_F_NAME, f.encode()), _Coded(codes, labels)))
        for k in schema.segments:
            c = col(k)
            if c is not None:
                codes, labels = frame.categorical(c)
                self.segments.append(
                    (w.field(w.T_S_KEY, k.encode()), _Strings(codes, labels, w.T_S_VALUES))
                )
        for f in sorted(features):
            c = attrs[f] if f in attrs else col(ATTR_PREFIX + f)
            if c is not None:
                self.attributions.append((w.field(w.T_F_NAME, f.encode()), frame.numeric(c)))
        self.features_sent = [n for n in schema.numeric if col(n) is not None] + [
            n for n in schema.categorical if col(n) is not None
        ]
        stray = sorted(
            n
            for n in frame.names
            if n.startswith(ATTR_PREFIX)
            and n not in features
            and n[len(ATTR_PREFIX) :] not in features
            and n not in cols.values()
            and n not in attrs.values()
        )
        if stray:
            log.warning(
                "driftdb: columns %s look like attributions of features model %r lacks "
                "(its features: %s); they are not sent",
                stray,
                schema.model_id,
                sorted(features),
            )

    def encode(self, a: int, b: int, producer: str, seq: int) -> bytes:
        head = ingest_pb2.InferenceBatch(
            model_id=self.schema.model_id,
            producer_id=producer,
            sequence=seq,
            request_ids=self.request_ids[a:b],
            model_versions=[self.version] if self.versions is None else self.versions[a:b],
        ).SerializeToString()
        parts = [head, w.field(0x2A, np_varints(self.ts[a:b]))]  # 5: ts_ms
        for key_field, s in self.segments:
            data, _ = s.encode(a, b)
            payload = key_field + data
            parts += [bytes((w.T_SEGMENTS,)), w.varint(len(payload)), payload]
        for name_field, x in self.numeric:
            raw, missing = _doubles_and_missing(x[a:b])
            body = [name_field, bytes((w.T_F_NUMBERS,)), w.varint(len(raw)), raw]
            if missing is not None:
                m = np_varints(missing)
                body += [bytes((w.T_F_MISSING,)), w.varint(len(m)), m]
            payload = b"".join(body)
            parts += [bytes((w.T_FEATURES,)), w.varint(len(payload)), payload]
        for name_field, coded in self.categorical:
            payload = name_field + coded.encode(a, b)
            parts += [bytes((w.T_FEATURES,)), w.varint(len(payload)), payload]
        if self.scores is not None:
            raw, missing = _doubles_and_missing(self.scores[a:b])
            parts.append(w.field(w.T_SCORES, raw))
            if missing is not None:
                parts.append(w.field(w.T_SCORE_MISSING, np_varints(missing)))
        if self.latency is not None:
            x = self.latency[a:b]
            if not np.isnan(x).all():
                parts.append(w.field(w.T_LATENCY, _le_bytes(x)))
        if self.cost is not None:
            x = self.cost[a:b]
            if not np.isnan(x).all():  # NaN cost: the row reports none
                parts.append(w.field(w.T_COST, _le_bytes(x)))
        for name_field, x in self.attributions:
            x = x[a:b]
            if np.isnan(x).all():
                continue  # no row of this batch explains the feature: not sent
            raw, missing = _doubles_and_missing(x)
            body = [name_field, w.field(w.T_F_NUMBERS, raw)]
            if missing is not None:
                body.append(w.field(w.T_F_MISSING, np_varints(missing)))
            parts.append(w.field(w.T_ATTRIBUTIONS, b"".join(body)))
        if self.labels is not None:
            raw, missing = _doubles_and_missing(self.labels[a:b])
            parts.append(w.field(w.T_LABELS, raw))
            if missing is not None:
                parts.append(w.field(w.T_LABEL_MISSING, np_varints(missing)))
        return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Labels


_OUTCOMES = ("click", "purchase", "revenue", "dwell_ms")


class LabelFrameEncoder:
    """Encodes row ranges of a label table as ``LabelBatch`` bytes."""

    def __init__(
        self,
        model_id: str,
        frame: Frame,
        *,
        columns: Optional[Mapping[str, str]] = None,
        ts_unit: str = "ms",
    ) -> None:
        cols = dict(columns or {})
        names = set(frame.names)
        allowed = {"request_id", "ts", "label", "relevance", *_OUTCOMES}
        unknown = set(cols) - allowed
        if unknown:
            raise ValueError(f"columns maps {sorted(unknown)}; labels know {sorted(allowed)}")
        for k, v in cols.items():
            if v not in names:
                raise ValueError(f"columns maps {k!r} to {v!r}, which is not a column")

        def col(name: str) -> Optional[str]:
            c = cols.get(name, name)
            return c if c in names else None

        self.model_id = model_id
        self.n = frame.n
        rid = col("request_id")
        if rid is None:
            raise ValueError("the table has no request_id column")
        self.request_ids = frame.strings(rid)
        ts = col("ts")
        self.ts = frame.times_ms(ts, ts_unit).tolist() if ts is not None else None
        lab = col("label")
        self.labels = frame.numeric(lab).tolist() if lab is not None else None
        self.outcomes = {
            k: frame.numeric(c).tolist() for k in _OUTCOMES if (c := col(k)) is not None
        }
        rel = col("relevance")
        self.relevance = frame._col(rel).tolist() if rel is not None else None

    def encode(self, a: int, b: int, producer: str, seq: int) -> bytes:
        batch = ingest_pb2.LabelBatch(model_id=self.model_id, producer_id=producer, sequence=seq)
        labels = batch.labels
        ids = self.request_ids
        for i in range(a, b):
            m = labels.add(request_id=ids[i])
            if self.ts is not None:
                m.ts_ms = self.ts[i]
            if self.labels is not None:
                y = self.labels[i]
                if y == y:
                    m.label = y
            if self.outcomes or self.relevance is not None:
                o = m.outcome
                for k, vals in self.outcomes.items():
                    v = vals[i]
                    if v == v:
                        setattr(o, k, v)
                if self.relevance is not None and self.relevance[i]:
                    for item, grade in dict(self.relevance[i]).items():
                        o.relevance[str(item)] = float(grade)
                o.SetInParent()
        return batch.SerializeToString()

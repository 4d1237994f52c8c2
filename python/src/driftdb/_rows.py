"""Rows queued by ``Monitor.log`` / ``LabelLogger.log`` -> encoded batches (background thread).

A queued inference row is the tuple ``(request_id, ts, features, segments, score, latency_ms,
items, cost, attributions)`` (the last two may be left off); a queued label is
``(request_id, ts, label, outcomes)``.
"""

from __future__ import annotations

import logging
from operator import itemgetter
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from . import _wire as w
from ._models import Schema
from ._proto.driftdb.v1 import ingest_pb2
from ._timeconv import many_to_ms, to_ms

log = logging.getLogger("driftdb")

_NAN = float("nan")


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], Tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda d: (d[name],)
    return itemgetter(*names)


def transpose(dicts: Sequence[Any], names: Sequence[str]) -> List[Tuple[Any, ...]]:
    """The columns ``names`` of a list of mappings (absent keys and ``None`` mappings give
    ``None``), one tuple per name."""
    if not names:
        return []
    get = _getter(names)
    try:
        # Every mapping has every name: one C-level pass.
        return list(zip(*map(get, dicts)))
    except (KeyError, TypeError):
        pass
    rows: List[Tuple[Any, ...]] = []
    append = rows.append
    for d in dicts:
        try:
            append(get(d))
        except (KeyError, TypeError):
            if d is None:
                append((None,) * len(names))
            else:
                append(tuple(map(d.get, names)))
    return list(zip(*rows))


def _str_ids(ids: List[Any]) -> List[str]:
    if set(map(type, ids)) == {str}:
        return ids
    return [x if isinstance(x, str) else str(x) for x in ids]


def _ranked(items: Any) -> bytes:
    """A ``RankedList`` record (tag included) from ``[(id, score), ...]``, ``[{"id", "score"}]``
    or bare ids."""
    out = []
    for it in items or ():
        if isinstance(it, Mapping):
            iid, score = it.get("id"), it.get("score")
        elif isinstance(it, (tuple, list)):
            iid, score = it[0], (it[1] if len(it) > 1 else None)
        else:
            iid, score = it, None
        out.append(
            ingest_pb2.RankedItem(id=str(iid), score=_NAN if score is None else float(score))
        )
    return w.field(w.T_ITEMS, ingest_pb2.RankedList(items=out).SerializeToString())


class InferenceEncoder:
    """Encodes queued rows of one (model, version) into ``InferenceBatch`` bytes."""

    def __init__(self, schema: Schema, version: str) -> None:
        self.schema = schema
        self.version = version
        self.names = schema.numeric + schema.categorical
        self.known = set(self.names)
        self.n_numeric = len(schema.numeric)
        self._name_fields = [w.field(w.T_F_NAME, n.encode("utf-8")) for n in self.names]
        self._seg_fields = [w.field(w.T_S_KEY, k.encode("utf-8")) for k in schema.segments]
        self._cats = w.StringColumnEncoder(w.T_F_CATEGORIES)
        self._segs = w.StringColumnEncoder(w.T_S_VALUES)
        self._warned: set = set()
        self._warned_attr: set = set()

    def _warn_unknown(self, feats: Any, segs: Any) -> None:
        if isinstance(feats, Mapping) and len(feats) and not feats.keys() <= self.known:
            for k in set(feats) - self.known - self._warned:
                self._warned.add(k)
                log.warning(
                    "driftdb: feature %r is not in model %r's definition; it is not sent",
                    k,
                    self.schema.model_id,
                )
        if isinstance(segs, Mapping) and len(segs):
            for k in set(segs) - set(self.schema.segments) - self._warned:
                self._warned.add(k)
                log.warning(
                    "driftdb: segment key %r is not in model %r's definition; it is not sent",
                    k,
                    self.schema.model_id,
                )

    def encode(self, rows: Sequence[tuple], producer: str, seq: int) -> bytes:
        ids = _str_ids([r[0] for r in rows])
        head = ingest_pb2.InferenceBatch(
            model_id=self.schema.model_id,
            producer_id=producer,
            sequence=seq,
            request_ids=ids,
            ts_ms=many_to_ms([r[1] for r in rows]),
            model_versions=[self.version],
        ).SerializeToString()
        parts = [head]
        first = rows[0]
        self._warn_unknown(first[2], first[3])
        if self._seg_fields:
            seg_cols = transpose([r[3] for r in rows], self.schema.segments)
            for key_field, col in zip(self._seg_fields, seg_cols):
                parts.append(w.segment_column(key_field, col, self._segs))
        if self.names:
            cols = transpose([r[2] for r in rows], self.names)
            n_num = self.n_numeric
            for i, (name_field, col) in enumerate(zip(self._name_fields, cols)):
                if i < n_num:
                    parts.append(w.numeric_feature(name_field, col))
                else:
                    parts.append(w.categorical_feature(name_field, col, self._cats))
        scores = [r[4] for r in rows]
        if scores.count(None) != len(scores):
            parts.append(w.doubles_field(w.T_SCORES, w.T_SCORE_MISSING, scores))
        lat = [r[5] for r in rows]
        if lat.count(None) != len(lat):
            a, missing = w.numbers(lat)
            for i in missing:  # NaN latency means "not measured"
                a[i] = _NAN
            parts.append(w.field(w.T_LATENCY, w.doubles_bytes(a)))
        if len(first) > 7:
            costs = [r[7] for r in rows]
            if costs.count(None) != len(costs):
                a, missing = w.numbers(costs)
                for i in missing:  # NaN cost means "not reported"
                    a[i] = _NAN
                parts.append(w.field(w.T_COST, w.doubles_bytes(a)))
            attrs = [r[8] for r in rows]
            if any(m is not None for m in attrs):
                parts.extend(self._attributions(attrs))
        if any(r[6] for r in rows):
            parts.extend(_ranked(r[6]) for r in rows)
        return b"".join(parts)

    def _attributions(self, attrs: List[Any]) -> List[bytes]:
        """One ``attributions`` column per model feature some row explains; names the model
        lacks are dropped with a warning (the server would refuse the whole batch)."""
        named: set = set()
        for m in attrs:
            if m is not None:
                named.update(m.keys())
        for k in named - self.known - self._warned_attr:
            self._warned_attr.add(k)
            log.warning(
                "driftdb: attribution of %r, which is not a feature of model %r; it is not sent",
                k,
                self.schema.model_id,
            )
        names = sorted(named & self.known)
        out = []
        for name, col in zip(names, transpose(attrs, names)):
            rec = w.attribution_column(w.field(w.T_F_NAME, name.encode("utf-8")), col)
            if rec:
                out.append(rec)
        return out


_OUTCOME_FIELDS = ("click", "purchase", "revenue", "dwell_ms")


def label_message(
    request_id: Any, ts: Any, label: Any, outcomes: Any, model_id: str = ""
) -> ingest_pb2.Label:
    """One ``driftdb.v1.Label``: ``label`` a number or bool (``None``: none), ``outcomes`` a
    mapping of ``click``, ``purchase``, ``revenue``, ``dwell_ms`` and ``relevance`` (a mapping of
    item id to grade) for ranking models."""
    m = ingest_pb2.Label(request_id=str(request_id), ts_ms=to_ms(ts) if ts is not None else 0)
    if label is not None:
        y = float(label)
        if y == y:
            m.label = y
    if outcomes:
        o = m.outcome
        for k in _OUTCOME_FIELDS:
            v = outcomes.get(k)
            if v is not None:
                setattr(o, k, float(v))
        rel = outcomes.get("relevance")
        if rel:
            for k, v in rel.items():
                o.relevance[str(k)] = float(v)
        m.outcome.SetInParent()
    if model_id:
        m.model_id = model_id
    return m


class LabelEncoder:
    """Encodes queued labels of one model into ``LabelBatch`` bytes."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def encode(self, rows: Sequence[tuple], producer: str, seq: int) -> bytes:
        b = ingest_pb2.LabelBatch(model_id=self.model_id, producer_id=producer, sequence=seq)
        b.labels.extend(label_message(r[0], r[1], r[2], r[3]) for r in rows)
        return b.SerializeToString()


def stats_from_ack(ack: Any) -> Dict[str, int]:
    """The counters of a ``BatchAck`` or ``LabelAck``."""
    if isinstance(ack, ingest_pb2.BatchAck):
        return {
            "accepted": ack.accepted,
            "rejected": ack.rejected,
            "duplicates": ack.duplicates,
            "invalid_values": ack.invalid_values,
            "server_sampled_out": ack.sampled_out,
        }
    return {
        "joined": ack.joined,
        "pending": ack.pending,
        "rejected": ack.rejected,
        "duplicates": ack.duplicates,
        "server_sampled_out": getattr(ack, "sampled_out", 0),
    }

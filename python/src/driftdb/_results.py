"""Result types: query tables, drift summaries, rules, alerts, keys, ingest summaries."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from ._proto.driftdb.v1 import alerts_pb2, query_pb2

_SEVERITY = {
    alerts_pb2.SEVERITY_UNSPECIFIED: "",
    alerts_pb2.SEVERITY_CRITICAL: "critical",
    alerts_pb2.SEVERITY_HIGH: "high",
    alerts_pb2.SEVERITY_MEDIUM: "medium",
    alerts_pb2.SEVERITY_LOW: "low",
}
SEVERITY_BY_NAME = {v: k for k, v in _SEVERITY.items() if v}


def _cell(c: query_pb2.Cell) -> Any:
    which = c.WhichOneof("value")
    if which == "number":
        return c.number
    if which == "text":
        return c.text
    return None


class QueryResult:
    """A DriftQL result table.

    ``columns`` are the column names, ``rows`` a list of dicts keyed by column (numbers are
    floats, null cells ``None``), ``warnings`` the server's non-fatal notes. ``to_pandas()``
    gives a DataFrame with the same columns.
    """

    __slots__ = ("columns", "rows", "warnings")

    def __init__(
        self, columns: List[str], rows: List[Dict[str, Any]], warnings: Optional[List[str]] = None
    ) -> None:
        self.columns = columns
        self.rows = rows
        self.warnings = warnings or []

    @classmethod
    def from_pb(cls, t: query_pb2.Table, warnings: Any = ()) -> "QueryResult":
        cols = list(t.columns)
        width = len(cols)
        rows = []
        for r in t.rows:
            vals = [_cell(c) for c in r.cells]
            if len(vals) < width:
                vals += [None] * (width - len(vals))
            rows.append(dict(zip(cols, vals)))
        return cls(cols, rows, list(warnings))

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (needs the ``pandas`` extra); null numbers are
        NaN."""
        import pandas as pd

        return pd.DataFrame.from_records(self.rows, columns=self.columns)

    def to_json(self) -> List[Dict[str, Any]]:
        """The rows as ``driftdb query --json`` prints them: whole numbers as ints, non-finite
        numbers as ``None``."""
        out = []
        for r in self.rows:
            o = {}
            for k, v in r.items():
                if isinstance(v, float):
                    if v != v or v in (float("inf"), float("-inf")):
                        v = None
                    elif v.is_integer() and abs(v) < 9.0e15:
                        v = int(v)
                o[k] = v
            out.append(o)
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return self.rows[i]

    def __repr__(self) -> str:
        return f"QueryResult({len(self.rows)} rows, columns={self.columns!r})"


@dataclass
class DriftSummary:
    """A model's drift summary over a range (``Client.drift_summary``)."""

    model: str
    version: str
    start: str
    end: str
    drifted_features: QueryResult
    prediction_shift: QueryResult
    performance: QueryResult
    warnings: List[str] = field(default_factory=list)


def _ms_dt(ms: int) -> Optional[_dt.datetime]:
    if not ms:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000.0, tz=_dt.timezone.utc)


@dataclass
class Alert:
    """One alert record (a rule fired or resolved), as ``WatchAlerts`` / ``ListAlerts`` give it."""

    sequence: int
    rule_id: str
    model: str
    version: str
    feature: str
    segment: Dict[str, str]
    metric: str
    value: float
    threshold: float
    severity: str
    state: str
    window_start_ms: int
    fired_at_ms: int
    resolved_at_ms: int
    actions: List[Dict[str, Any]]
    summary: str
    reference: float
    rule_kind: str
    event: str
    dedup_key: str

    @classmethod
    def from_pb(cls, a: alerts_pb2.Alert) -> "Alert":
        return cls(
            sequence=a.sequence,
            rule_id=a.rule_id,
            model=a.model,
            version=a.version,
            feature=a.feature,
            segment=dict(a.segment),
            metric=a.metric,
            value=a.value,
            threshold=a.threshold,
            severity=_SEVERITY.get(a.severity, str(a.severity)),
            state=a.state,
            window_start_ms=a.window_start_ms,
            fired_at_ms=a.fired_at_ms,
            resolved_at_ms=a.resolved_at_ms,
            actions=[
                {
                    "kind": x.kind,
                    "url": x.url,
                    "delivered": x.delivered,
                    "attempts": x.attempts,
                    "last_error": x.last_error,
                    "dead_lettered": x.dead_lettered,
                }
                for x in a.actions
            ],
            summary=a.summary,
            reference=a.reference,
            rule_kind=a.rule_kind,
            event=a.event,
            dedup_key=a.dedup_key,
        )

    @property
    def window_start(self) -> Optional[_dt.datetime]:
        return _ms_dt(self.window_start_ms)

    @property
    def fired_at(self) -> Optional[_dt.datetime]:
        return _ms_dt(self.fired_at_ms)

    @property
    def resolved_at(self) -> Optional[_dt.datetime]:
        return _ms_dt(self.resolved_at_ms)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Rule:
    """A stored rule: its JSON definition (secrets shown as ``***``) and bookkeeping."""

    id: str
    definition: Dict[str, Any]
    version: int
    updated_at_ms: int
    model: str
    kind: str
    severity: str
    last_error: str

    @classmethod
    def from_pb(cls, r: alerts_pb2.Rule) -> "Rule":
        try:
            definition = json.loads(r.definition_json) if r.definition_json else {}
        except ValueError:
            definition = {"raw": r.definition_json}
        return cls(
            id=r.id,
            definition=definition,
            version=r.version,
            updated_at_ms=r.updated_at_ms,
            model=r.model,
            kind=r.kind,
            severity=_SEVERITY.get(r.severity, str(r.severity)),
            last_error=r.last_error,
        )


@dataclass
class ApiKey:
    """An API key's record (never its secret)."""

    id: str
    name: str
    team: str
    scopes: List[str]
    created_at_ms: int
    created_by: str
    revoked_at_ms: int

    @classmethod
    def from_pb(cls, k: Any) -> "ApiKey":
        return cls(
            id=k.id,
            name=k.name,
            team=k.team,
            scopes=list(k.scopes),
            created_at_ms=k.created_at_ms,
            created_by=k.created_by,
            revoked_at_ms=k.revoked_at_ms,
        )


@dataclass
class CreatedKey:
    """A new API key: ``token`` (``ddb_…``) is shown this once."""

    key: ApiKey
    token: str


@dataclass
class RowError:
    row: int
    request_id: str
    reason: str


@dataclass
class IngestResult:
    """What ``Client.ingest`` delivered, summed over the acks of its batches."""

    rows: int = 0
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    invalid_values: int = 0
    sampled_out: int = 0
    replayed_batches: int = 0
    retried_batches: int = 0
    producer_id: str = ""
    seconds: float = 0.0
    errors: List[RowError] = field(default_factory=list)


@dataclass
class LabelsResult:
    """What ``Client.labels_frame`` delivered, summed over the acks of its batches."""

    labels: int = 0
    batches: int = 0
    joined: int = 0
    pending: int = 0
    rejected: int = 0
    duplicates: int = 0
    sampled_out: int = 0
    replayed_batches: int = 0
    retried_batches: int = 0
    producer_id: str = ""
    seconds: float = 0.0
    errors: List[RowError] = field(default_factory=list)


@dataclass
class ReferenceResult:
    """The server's summary of a reference upload."""

    model: str
    version: str
    rows: int
    rejected: int
    features: List[str]
    errors: List[RowError] = field(default_factory=list)

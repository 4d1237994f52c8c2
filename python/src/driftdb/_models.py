"""Model definitions: the JSON form of SPEC §5 (what ``driftdb model show`` prints) <-> proto."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Union

from ._proto.driftdb.v1 import models_pb2

_TASKS = {
    "binary": models_pb2.TASK_BINARY,
    "multiclass": models_pb2.TASK_MULTICLASS,
    "regression": models_pb2.TASK_REGRESSION,
    "ranking": models_pb2.TASK_RANKING,
}
_TASK_NAMES = {v: k for k, v in _TASKS.items()}
_KINDS = {
    "numeric": models_pb2.FEATURE_KIND_NUMERIC,
    "categorical": models_pb2.FEATURE_KIND_CATEGORICAL,
}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}

ModelSpec = Union[Mapping[str, Any], str, "os.PathLike[str]"]


def load_spec(spec: ModelSpec) -> Dict[str, Any]:
    """A model definition from a mapping, a JSON string, or the path of a JSON file."""
    if isinstance(spec, Mapping):
        return dict(spec)
    text = os.fspath(spec)
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text, encoding="utf-8") as f:
        return json.load(f)


def to_pb(spec: Mapping[str, Any]) -> models_pb2.Model:
    """A ``driftdb.v1.Model`` from a definition in the JSON form."""
    m = models_pb2.Model(id=str(spec["id"]))
    task = spec.get("task", "")
    if task not in _TASKS:
        raise ValueError(f"model task must be one of {sorted(_TASKS)}, got {task!r}")
    m.task = _TASKS[task]
    for key in ("window", "grace", "max_label_delay", "team"):
        if spec.get(key):
            setattr(m, key, str(spec[key]))
    m.segments.extend(str(s) for s in spec.get("segments") or ())
    if spec.get("segment_cap"):
        m.segment_cap = int(spec["segment_cap"])
    for name, kind in (spec.get("features") or {}).items():
        if kind not in _KINDS:
            raise ValueError(f"feature {name!r}: kind must be numeric or categorical, got {kind!r}")
        m.features[str(name)] = _KINDS[kind]
    if spec.get("sampling") is not None:
        m.sampling = float(spec["sampling"])
    return m


def from_pb(m: models_pb2.Model) -> Dict[str, Any]:
    """The JSON form of a ``driftdb.v1.Model`` (features sorted by name, as the server keeps
    them), with the versions that have a reference profile."""
    out: Dict[str, Any] = {
        "id": m.id,
        "task": _TASK_NAMES.get(m.task, "unspecified"),
        "window": m.window,
        "grace": m.grace,
        "max_label_delay": m.max_label_delay,
        "segments": list(m.segments),
        "segment_cap": m.segment_cap,
        "features": {k: _KIND_NAMES.get(m.features[k], "unspecified") for k in sorted(m.features)},
        "sampling": m.sampling,
    }
    if m.team:
        out["team"] = m.team
    out["versions"] = sorted(m.versions)
    return out


class Schema:
    """What ingest needs of a model: feature kinds, segment keys, sampling rate, task."""

    __slots__ = ("model_id", "task", "numeric", "categorical", "segments", "sampling", "spec")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.model_id: str = spec["id"]
        self.task: str = spec.get("task", "")
        feats = spec.get("features") or {}
        self.numeric: List[str] = sorted(k for k, v in feats.items() if v == "numeric")
        self.categorical: List[str] = sorted(k for k, v in feats.items() if v == "categorical")
        self.segments: List[str] = list(spec.get("segments") or ())
        rate = float(spec.get("sampling") or 1.0)
        self.sampling: float = 1.0 if rate <= 0.0 else rate

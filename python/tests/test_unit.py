"""Tests that need no server: sampling, wire encoding, table normalisation, errors."""

from __future__ import annotations

import datetime as dt
import math
import zlib

import grpc
import numpy as np
import pytest

import driftdb
from driftdb import _wire
from driftdb._frames import Frame, FrameEncoder, np_varints
from driftdb._models import Schema, from_pb, to_pb
from driftdb._proto.driftdb.v1 import ingest_pb2
from driftdb._rows import InferenceEncoder, LabelEncoder
from driftdb._timeconv import parse_rfc3339, time_arg, to_ms

SPEC = {
    "id": "m",
    "task": "binary",
    "segments": ["channel", "country"],
    "features": {
        "amount": "numeric",
        "age": "numeric",
        "browser": "categorical",
        "is_new": "categorical",
    },
}


def _cats(col):
    """A categorical FeatureColumn's values, "" where missing, whichever encoding it uses."""
    if not col.codes and not col.dictionary:
        return list(col.categories)
    missing = set(col.missing)
    return ["" if r in missing else col.dictionary[k] for r, k in enumerate(col.codes)]


def test_sampling_is_the_servers_rule():
    ids = [f"req-{i}" for i in range(20_000)]
    for rate in (0.0001, 0.1, 0.5, 0.9):
        want = [zlib.crc32(i.encode()) / 4294967295.0 < rate for i in ids]
        assert [driftdb.sampled_in(i, rate) for i in ids] == want
        share = sum(want) / len(ids)
        assert abs(share - rate) < 0.02
    assert all(driftdb.sampled_in(i, 1.0) for i in ids[:100])
    assert all(driftdb.sampled_in(i, 1.5) for i in ids[:100])
    # Non-ASCII ids hash their UTF-8 bytes.
    assert driftdb.sampled_in("é", 0.5) == (zlib.crc32("é".encode()) / 4294967295.0 < 0.5)


def test_varints_match_protobuf():
    for n in (1, 127, 128, 300, 2**31, 2**40 + 5):
        m = ingest_pb2.BatchAck(sequence=n)
        assert m.SerializeToString() == b"\x10" + _wire.varint(n)
    vals = [0, 1, 127, 128, 16383, 16384, 2**31 - 1, 1772323200272]
    assert np_varints(np.array(vals)) == _wire.packed_varints(vals)
    assert np_varints(np.array([], dtype=np.int64)) == b""


def test_rows_encode_missing_bools_and_unknown_names():
    enc = InferenceEncoder(Schema(SPEC), "v2")
    rows = [
        (
            "r1",
            1772323200.272,
            {"amount": 1.5, "age": 40, "browser": "safari", "is_new": True},
            {"channel": "web", "country": "de"},
            0.3,
            12.0,
            None,
        ),
        (
            "r2",
            "2026-03-01T00:00:01.5Z",
            {"amount": None, "age": float("nan"), "browser": "", "is_new": False, "extra": 1},
            {"channel": "app", "nope": "x"},
            None,
            None,
            None,
        ),
        (3, dt.datetime(2026, 3, 1, 0, 0, 2, tzinfo=dt.timezone.utc), None, None, 0.9, None, None),
    ]
    b = ingest_pb2.InferenceBatch.FromString(enc.encode(rows, "prod", 7))
    assert (b.model_id, b.producer_id, b.sequence) == ("m", "prod", 7)
    assert list(b.request_ids) == ["r1", "r2", "3"]
    assert list(b.ts_ms) == [1772323200272, 1772323201500, 1772323202000]
    assert list(b.model_versions) == ["v2"]
    f = {c.name: c for c in b.features}
    assert set(f) == {"amount", "age", "browser", "is_new"}
    assert list(f["amount"].numbers)[0] == 1.5 and list(f["amount"].missing) == [1, 2]
    assert list(f["age"].missing) == [1, 2]
    assert list(f["browser"].categories) == ["safari", "", ""]
    assert list(f["browser"].missing) == [1, 2]
    assert list(f["is_new"].categories) == ["true", "false", ""]
    assert list(f["is_new"].missing) == [2]
    s = {c.key: list(c.values) for c in b.segments}
    assert s == {"channel": ["web", "app", ""], "country": ["de", "", ""]}
    assert list(b.scores) == [0.3, 0.0, 0.9] and list(b.score_missing) == [1]
    assert b.latency_ms[0] == 12.0 and math.isnan(b.latency_ms[1]) and math.isnan(b.latency_ms[2])


def test_rows_without_scores_or_latency_omit_them():
    enc = InferenceEncoder(Schema(SPEC), "v1")
    b = ingest_pb2.InferenceBatch.FromString(
        enc.encode([("a", 1.0, {"amount": 1}, {}, None, None, None)], "p", 1)
    )
    assert len(b.scores) == 0 and len(b.latency_ms) == 0 and len(b.items) == 0


def test_rows_encode_cost_and_attributions(caplog):
    enc = InferenceEncoder(Schema(SPEC), "v1")
    rows = [
        ("a", 1.0, {"amount": 1}, None, 0.1, None, None, 0.5, {"amount": -0.25, "zeta": 1.0}),
        ("b", 2.0, {"amount": 2}, None, 0.2, None, None, None, None),
        ("c", 3.0, {"amount": 3}, None, 0.3, None, None, float("nan"), {"amount": None}),
        ("d", 4.0, {"amount": 4}, None, 0.4, None, None, 2.0, {"amount": 1.5, "browser": 0.5}),
    ]
    with caplog.at_level("WARNING", logger="driftdb"):
        b = ingest_pb2.InferenceBatch.FromString(enc.encode(rows, "p", 1))
    assert "zeta" in caplog.text
    assert b.cost[0] == 0.5 and math.isnan(b.cost[1]) and math.isnan(b.cost[2])
    assert b.cost[3] == 2.0
    attrs = {c.name: c for c in b.attributions}
    assert sorted(attrs) == ["amount", "browser"]  # zeta is not a feature: not sent
    assert list(attrs["amount"].numbers) == [-0.25, 0.0, 0.0, 1.5]
    assert list(attrs["amount"].missing) == [1, 2]
    assert list(attrs["browser"].numbers) == [0.0, 0.0, 0.0, 0.5]
    assert list(attrs["browser"].missing) == [0, 1, 2]
    # Rows without either send neither field.
    rows = [r[:7] + (None, {"amount": None}) for r in rows]
    b = ingest_pb2.InferenceBatch.FromString(enc.encode(rows, "p", 2))
    assert len(b.cost) == 0 and len(b.attributions) == 0


def test_labels_encode():
    b = ingest_pb2.LabelBatch.FromString(
        LabelEncoder("m").encode(
            [
                ("a", 1772323200.0, 1, None),
                ("b", None, True, None),
                ("c", 5.0, None, {"click": 1, "relevance": {"x": 2}}),
            ],
            "p",
            3,
        )
    )
    assert [(x.request_id, x.ts_ms, x.HasField("label") and x.label) for x in b.labels] == [
        ("a", 1772323200000, 1.0),
        ("b", 0, 1.0),
        ("c", 5000, False),
    ]
    assert b.labels[2].outcome.click == 1.0 and dict(b.labels[2].outcome.relevance) == {"x": 2.0}


def _frames():
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    df = pd.DataFrame(
        {
            "request_id": ["a", "b", "c", "d"],
            "ts": pd.to_datetime(
                ["2026-03-01T00:00:00.272Z", "2026-03-01T00:00:01Z", "2026-03-01T00:00:02Z", None],
                format="ISO8601",
                utc=True,
            ),
            "amount": [1.5, np.nan, 3.0, None],
            "age": pd.array([40, None, 41, 42], dtype="Int64"),
            "browser": pd.Categorical(["safari", None, "chrome", ""]),
            "is_new": [True, False, None, True],
            "channel": ["web", "app", None, "web"],
            "proba": [0.1, None, 0.3, 0.4],
        }
    )
    return df, [
        df,
        pa.Table.from_pandas(df),
        pa.RecordBatch.from_pandas(df),
        {c: df[c].to_numpy() for c in df.columns},
    ]


def test_frames_agree_across_pandas_arrow_and_numpy():
    df, datas = _frames()
    decoded = []
    for data in datas:
        enc = FrameEncoder(Schema(SPEC), Frame(data), version="v2", columns={"score": "proba"})
        b = ingest_pb2.InferenceBatch.FromString(enc.encode(0, 4, "p", 1))
        decoded.append(b)
        f = {c.name: c for c in b.features}
        assert list(b.ts_ms[:3]) == [1772323200272, 1772323201000, 1772323202000]
        assert list(f["amount"].missing) == [1, 3]
        assert list(f["age"].missing) == [1]
        assert _cats(f["browser"]) == ["safari", "", "chrome", ""]
        assert not f["browser"].categories, "tables send categorical features dictionary-coded"
        assert list(f["browser"].missing) == [1, 3]
        assert _cats(f["is_new"]) == ["true", "false", "", "true"]
        assert list(f["is_new"].missing) == [2]
        assert [list(s.values) for s in b.segments] == [["web", "app", "", "web"]]
        assert list(b.score_missing) == [1]
    # A missing ts is "now".
    assert all(abs(b.ts_ms[3] - decoded[0].ts_ms[3]) < 60_000 for b in decoded)
    # The same batch from every kind of table, up to the order of each dictionary.
    for b in decoded:
        for c in b.features:
            if c.codes:
                values = _cats(c)
                del c.dictionary[:], c.codes[:]
                c.categories.extend(values)
    for b in decoded[1:]:
        b.ts_ms[3] = decoded[0].ts_ms[3]
        assert b == decoded[0]


def test_frames_slices_and_bool_dtype():
    pd = pytest.importorskip("pandas")
    n = 1000
    df = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": np.arange(n, dtype=np.int64) + 1772323200000,
            "amount": np.where(np.arange(n) % 7 == 0, np.nan, np.arange(n) * 0.5),
            "is_new": np.arange(n) % 3 == 0,
        }
    )
    enc = FrameEncoder(Schema(SPEC), Frame(df), version="v1")
    b = ingest_pb2.InferenceBatch.FromString(enc.encode(300, 600, "p", 2))
    assert list(b.request_ids) == [f"r{i}" for i in range(300, 600)]
    assert list(b.ts_ms) == list(range(1772323200300, 1772323200600))
    f = {c.name: c for c in b.features}
    assert list(f["amount"].missing) == [i - 300 for i in range(300, 600) if i % 7 == 0]
    assert _cats(f["is_new"]) == ["true" if i % 3 == 0 else "false" for i in range(300, 600)]
    assert "age" not in f and "browser" not in f


def test_a_large_dictionary_is_cut_to_the_values_of_each_batch():
    n = 1000
    browser = np.array([f"b{i % 700}" for i in range(n)], dtype=object)
    browser[15] = None
    data = {"request_id": [f"r{i}" for i in range(n)], "browser": browser}
    enc = FrameEncoder(Schema(SPEC), Frame(data), version="v1")
    b = ingest_pb2.InferenceBatch.FromString(enc.encode(10, 30, "p", 1))
    (col,) = [c for c in b.features if c.name == "browser"]
    assert _cats(col) == ["" if i == 15 else f"b{i % 700}" for i in range(10, 30)]
    assert list(col.missing) == [5]
    assert len(col.dictionary) <= 20  # not the table's 700 values
    assert max(col.codes) < len(col.dictionary)


def test_frame_errors_name_the_problem():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"request_id": ["a"], "amount": [1.0]})
    with pytest.raises(ValueError, match="version"):
        FrameEncoder(Schema(SPEC), Frame(df), version=None)
    with pytest.raises(ValueError, match="not a column"):
        FrameEncoder(Schema(SPEC), Frame(df), version="v", columns={"score": "proba"})
    with pytest.raises(ValueError, match="neither features"):
        FrameEncoder(Schema(SPEC), Frame(df), version="v", columns={"bogus": "amount"})
    with pytest.raises(ValueError, match="request_id"):
        FrameEncoder(Schema(SPEC), Frame({"amount": [1.0]}), version="v")
    with pytest.raises(TypeError):
        Frame([1, 2, 3])


def test_time_conversions():
    assert to_ms("2026-03-01T00:00:00.272Z") == 1772323200272
    assert to_ms("2026-03-01T01:00:00+01:00") == 1772323200000
    assert to_ms(dt.datetime(2026, 3, 1)) == 1772323200000  # naive = UTC
    assert to_ms(1772323200.5) == 1772323200500
    assert to_ms(np.datetime64("2026-03-01T00:00:00.001")) == 1772323200001
    assert parse_rfc3339("2026-03-01T00:00:00.123456789Z").microsecond == 123456
    assert time_arg(dt.timedelta(hours=1)) == "now-3600s"
    assert time_arg(dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)) == "2026-03-01T00:00:00Z"
    assert time_arg(None) == ""


def test_model_json_round_trip():
    spec = dict(SPEC, window="15m", sampling=0.5, team="fraud")
    back = from_pb(to_pb(spec))
    assert back["features"] == SPEC["features"] and back["sampling"] == 0.5
    assert back["segments"] == SPEC["segments"] and back["team"] == "fraud"
    with pytest.raises(ValueError, match="task"):
        to_pb({"id": "x", "task": "nope"})


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, md=()):
        self._c, self._d, self._md = code, details, md

    def code(self):
        return self._c

    def details(self):
        return self._d

    def trailing_metadata(self):
        return self._md


def test_errors_are_typed_with_the_servers_message():
    e = driftdb._errors.from_rpc_error(
        _FakeRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "ingest is overloaded",
            (("retry-after-ms", "1000"),),
        )
    )
    assert isinstance(e, driftdb.ResourceExhausted) and isinstance(e, driftdb.DriftDBError)
    assert e.retry_after == 1.0 and e.message == "ingest is overloaded"
    assert "RESOURCE_EXHAUSTED" in str(e)
    e = driftdb._errors.from_rpc_error(
        _FakeRpcError(grpc.StatusCode.NOT_FOUND, 'model "x" not found')
    )
    assert isinstance(e, driftdb.NotFound) and e.retry_after is None
    e = driftdb._errors.from_rpc_error(_FakeRpcError(grpc.StatusCode.DATA_LOSS, "?"))
    assert type(e) is driftdb.DriftDBError and e.code == grpc.StatusCode.DATA_LOSS


def test_client_is_lazy_and_parses_addresses(monkeypatch):
    monkeypatch.delenv("DRIFTDB_SERVER", raising=False)
    c = driftdb.Client()
    assert c._channel is None and (c.target, c.tls) == ("127.0.0.1:50051", False)
    c = driftdb.Client("https://db.example:443", api_key=" ddb_x_y ")
    assert (c.target, c.tls) == ("db.example:443", True)
    assert c._metadata == (("authorization", "Bearer ddb_x_y"),)
    with pytest.raises(ValueError, match="TLS"):
        driftdb.Client("http://h:1", ca=b"pem")
    assert c._channel is None


def test_monitor_rejects_bad_settings():
    c = driftdb.Client("127.0.0.1:1")
    with pytest.raises(ValueError):
        c.monitor("m", version="")
    with pytest.raises(ValueError):
        c.monitor("m", version="v", batch_size=0)
    with pytest.raises(ValueError):
        c.monitor("m", version="v", max_queue=0)

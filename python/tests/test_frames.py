"""Batch ingest from pandas, pyarrow and numpy: NaN/None, booleans, categoricals; idempotent
re-runs; labels and references from tables; costs and attributions (encoding, and end to end)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytest
from conftest import small_model, unique

import driftdb
from driftdb import _wire
from driftdb._frames import Frame, FrameEncoder
from driftdb._models import Schema
from driftdb._proto.driftdb.v1 import ingest_pb2

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


def _frame(n, prefix="r"):
    rng = np.random.default_rng(7)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.1] = np.nan
    age = pd.array(rng.integers(18, 90, n), dtype="Int64")
    age[rng.random(n) < 0.05] = pd.NA
    browser = rng.choice(["chrome", "safari", "firefox"], n).astype(object)
    browser[rng.random(n) < 0.02] = None
    flag = pd.array(rng.random(n) < 0.3, dtype="boolean")
    flag[rng.random(n) < 0.01] = pd.NA
    return pd.DataFrame(
        {
            "request_id": [f"{prefix}-{i}" for i in range(n)],
            "ts": now - pd.to_timedelta(rng.integers(0, 600_000, n), unit="ms"),
            "amount": amount,
            "age": age,
            "browser": pd.Categorical(browser),
            "flag": flag,
            "channel": rng.choice(["web", "app", "pos"], n),
            "proba": rng.random(n),
        }
    )


def _values(db, metric, model, feature):
    res = db.query(f"{metric}({model}.{feature}) over 2h")
    assert len(res) == 1, res.rows
    return res.rows[0]["value"]


def _check_counts(db, model, df):
    assert _values(db, "rows", model, "amount") == len(df)
    assert _values(db, "count", model, "amount") == df["amount"].notna().sum()
    assert _values(db, "count", model, "age") == df["age"].notna().sum()
    assert _values(db, "count", model, "browser") == df["browser"].notna().sum()
    assert _values(db, "count", model, "flag") == df["flag"].notna().sum()
    assert _values(db, "distinct", model, "flag") == 2
    assert _values(db, "distinct", model, "browser") == 3
    assert (
        abs(_values(db, "mean", model, "amount") - df["amount"].mean()) < 1e-9 * df["amount"].mean()
    )
    assert abs(_values(db, "missing_rate", model, "age") - df["age"].isna().mean()) < 1e-12


@pytest.mark.parametrize("kind", ["pandas", "arrow_table", "arrow_batch", "numpy"])
def test_ingest_tables(db, kind):
    model = unique(f"tbl_{kind}")
    db.models.create(small_model(model))
    df = _frame(5000)
    data = {
        "pandas": lambda: df,
        "arrow_table": lambda: pa.Table.from_pandas(df),
        "arrow_batch": lambda: pa.RecordBatch.from_pandas(df),
        "numpy": lambda: {c: df[c].to_numpy() for c in df.columns},
    }[kind]()
    r = db.ingest(data, model=model, version="v1", columns={"score": "proba"}, batch_size=1500)
    assert (r.rows, r.batches, r.accepted, r.rejected) == (5000, 4, 5000, 0), r
    _check_counts(db, model, df)
    assert _values(db, "count", model, "$score") == 5000


def test_ingest_is_idempotent_per_producer(db):
    model = unique("idem")
    db.models.create(small_model(model))
    df = _frame(3000)
    r1 = db.ingest(df, model=model, version="v1", producer="job-1", batch_size=1000)
    assert (r1.accepted, r1.replayed_batches) == (3000, 0)
    r2 = db.ingest(df, model=model, version="v1", producer="job-1", batch_size=1000)
    assert (r2.accepted, r2.replayed_batches, r2.batches) == (0, 3, 3)
    r3 = db.ingest(df, model=model, version="v1", batch_size=1000)  # another producer
    assert (r3.accepted, r3.duplicates) == (0, 3000)
    assert _values(db, "rows", model, "amount") == 3000


def test_ingest_row_errors_and_call_errors(db):
    model = unique("errs")
    db.models.create(small_model(model))
    df = _frame(10)
    df.loc[3, "request_id"] = ""
    df["ts"] = df["ts"].astype("datetime64[ns, UTC]")
    df.loc[4, "ts"] = pd.Timestamp("2000-01-01", tz="UTC")  # older than retention
    r = db.ingest(df, model=model, version="v1")
    assert (r.accepted, r.rejected) == (8, 2)
    assert sorted(e.row for e in r.errors) == [3, 4]
    with pytest.raises(driftdb.NotFound, match="not found"):
        db.ingest(df, model=unique("nope"), version="v1")
    bad = df.assign(model_version="$bad", request_id=[f"bad-{i}" for i in range(10)])
    r = db.ingest(bad, model=model, batch_size=5)
    assert (r.accepted, r.rejected, r.batches) == (0, 10, 2)
    assert "model_version" in r.errors[0].reason
    assert _values(db, "rows", model, "amount") == 8


def test_labels_and_reference_from_tables(db):
    model = unique("lbl")
    db.models.create(small_model(model))
    ref = _frame(4000, "ref")
    ref["label"] = (np.random.default_rng(1).random(4000) < ref["proba"]).astype(int)
    s = db.upload_reference(model, "v1", pa.Table.from_pandas(ref), columns={"score": "proba"})
    assert (s.rows, s.rejected) == (4000, 0)
    assert db.models.show(model)["versions"] == ["v1"]
    with pytest.raises(driftdb.AlreadyExists):
        db.upload_reference(model, "v1", ref, columns={"score": "proba"})
    df = _frame(2000)
    assert db.ingest(df, model=model, version="v1", columns={"score": "proba"}).accepted == 2000
    labels = pd.DataFrame(
        {"rid": df["request_id"][:1500], "y": (df["proba"][:1500] > 0.5).astype(bool)}
    )
    labels.loc[labels.index[-1], "rid"] = "unknown-id"
    r = db.labels_frame(
        labels, model=model, columns={"request_id": "rid", "label": "y"}, batch_size=400
    )
    assert (r.labels, r.joined, r.pending, r.rejected) == (1500, 1499, 1, 0), r
    res = db.query(f"label_coverage({model}) over 2h")
    assert abs(res.rows[0]["value"] - 1499 / 2000) < 1e-12
    auc = db.query(f"auc({model}) over 2h").rows[0]
    assert auc["n"] == 1499 and auc["baseline_n"] == 4000
    time.sleep(0)


# ---------------------------------------------------------------------------------------------
# Costs and attributions: encoding (no server)

ATTR_SPEC = {
    "id": "risk",
    "task": "binary",
    "features": {"a": "numeric", "b": "numeric", "c": "categorical"},
}


def _batch(data, a=0, b=None, spec=ATTR_SPEC, **kw):
    enc = FrameEncoder(Schema(spec), Frame(data), version="v1", **kw)
    return ingest_pb2.InferenceBatch.FromString(enc.encode(a, enc.n if b is None else b, "p", 1))


def _attr_frame():
    nan = np.nan
    return pd.DataFrame(
        {
            "request_id": ["r0", "r1", "r2", "r3", "r4", "r5"],
            "a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "cost": [0.5, nan, 0.0, None, 2.25, 1e-3],
            "attr.a": [0.25, nan, -1.5, None, 3.0, 0.0],
            "shap_b": [nan, nan, nan, nan, -0.75, 0.5],  # only the last two rows explain b
            "c": ["x", "y", "x", "y", "x", "y"],
        }
    )


def _tables(df):
    return {
        "pandas": df,
        "arrow": pa.Table.from_pandas(df),
        "numpy": {c: df[c].to_numpy() for c in df.columns},
    }


def _nan_list(values):
    return [None if math.isnan(v) else v for v in values]


@pytest.mark.parametrize("kind", ["pandas", "arrow", "numpy"])
def test_cost_and_attributions_are_encoded(kind):
    data = _tables(_attr_frame())[kind]
    b = _batch(data, attributions={"b": "shap_b"})
    # cost: one double per row, NaN for rows that report none.
    assert _nan_list(b.cost) == [0.5, None, 0.0, None, 2.25, 1e-3]
    # attributions: one FeatureColumn per explained feature, `attr.a` found by its name.
    attrs = {c.name: c for c in b.attributions}
    assert sorted(attrs) == ["a", "b"]
    assert list(attrs["a"].numbers) == [0.25, 0.0, -1.5, 0.0, 3.0, 0.0]
    assert list(attrs["a"].missing) == [1, 3]
    assert list(attrs["b"].numbers) == [0.0, 0.0, 0.0, 0.0, -0.75, 0.5]
    assert list(attrs["b"].missing) == [0, 1, 2, 3]
    assert not attrs["a"].categories and not attrs["a"].codes and not attrs["a"].dictionary
    # attr.* columns are not features: features are sent as before.
    assert sorted(f.name for f in b.features) == ["a", "c"]


def test_an_attribution_column_no_row_of_a_batch_carries_is_left_out():
    df = _attr_frame()
    b = _batch(df, 0, 4, attributions={"b": "shap_b"})  # shap_b is NaN in rows 0..3
    assert [c.name for c in b.attributions] == ["a"]
    assert list(b.attributions[0].missing) == [1, 3]
    b = _batch(df, 4, 6, attributions={"b": "shap_b"})
    attrs = {c.name: c for c in b.attributions}
    assert list(attrs["a"].numbers) == [3.0, 0.0] and not attrs["a"].missing
    assert list(attrs["b"].numbers) == [-0.75, 0.5] and not attrs["b"].missing
    # A batch with no cost at all sends no cost field; an all-missing attr.* column nothing.
    df["cost"] = np.nan
    df["attr.c"] = None
    b = _batch(df)
    assert len(b.cost) == 0
    assert [c.name for c in b.attributions] == ["a"]


def test_attributions_and_cost_columns_by_name_or_mapping():
    df = _attr_frame().rename(columns={"cost": "usd", "attr.a": "sa"})
    b = _batch(df)
    assert len(b.cost) == 0 and len(b.attributions) == 0
    # columns= maps `cost` and `attr.<feature>` like any other name.
    b = _batch(df, columns={"cost": "usd", "attr.a": "sa"})
    assert _nan_list(b.cost) == [0.5, None, 0.0, None, 2.25, 1e-3]
    assert [c.name for c in b.attributions] == ["a"]
    assert list(b.attributions[0].missing) == [1, 3]
    # attributions= wins over an attr.<feature> column; a categorical feature may be explained.
    df["attr.a"] = 9.0
    df["shap_c"] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    b = _batch(df, attributions={"a": "sa", "c": "shap_c"})
    attrs = {c.name: c for c in b.attributions}
    assert list(attrs["a"].numbers)[0] == 0.25
    assert list(attrs["c"].numbers) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_unknown_attribution_features_are_refused_before_sending():
    df = _attr_frame().assign(shap_z=1.0)
    with pytest.raises(ValueError, match=r"\['zeta'\].*'risk'.*its features: \['a', 'b', 'c'\]"):
        _batch(df, attributions={"zeta": "shap_z"})
    with pytest.raises(ValueError, match="not a column"):
        _batch(df, attributions={"a": "nope"})
    with pytest.raises(ValueError, match="neither features"):
        _batch(df, columns={"attr.zeta": "shap_z"})


def test_attr_columns_of_unknown_features_are_not_sent(caplog):
    df = _attr_frame().assign(**{"attr.zeta": 1.0})
    with caplog.at_level(logging.WARNING, logger="driftdb"):
        b = _batch(df)
    assert sorted(c.name for c in b.attributions) == ["a"]
    assert "attr.zeta" in caplog.text and "'risk'" in caplog.text


def test_a_feature_named_cost_stays_a_feature():
    spec = {"id": "m", "task": "binary", "features": {"cost": "numeric"}}
    b = _batch(_attr_frame(), spec=spec)
    assert len(b.cost) == 0
    assert [f.name for f in b.features] == ["cost"] and list(b.features[0].missing) == [1, 3]


def test_cost_and_attribution_tags_match_protobuf():
    # Field 16's tag does not fit one byte: 16 << 3 | 2 = 130 is the varint 0x82 0x01.
    col = ingest_pb2.FeatureColumn(name="a", numbers=[1.5, 0.0], missing=[1])
    want = ingest_pb2.InferenceBatch(attributions=[col], cost=[0.25]).SerializeToString()
    body = col.SerializeToString()
    assert _wire.field(_wire.T_ATTRIBUTIONS, body)[:2] == b"\x82\x01"
    got = _wire.field(_wire.T_COST, _wire.doubles_bytes(_wire.numbers([0.25])[0]))
    got = _wire.field(_wire.T_ATTRIBUTIONS, body) + got
    assert ingest_pb2.InferenceBatch.FromString(got).SerializeToString() == want
    name = _wire.field(_wire.T_F_NAME, b"a")
    assert _wire.attribution_column(name, [1.5, None]) == _wire.field(_wire.T_ATTRIBUTIONS, body)
    assert _wire.attribution_column(name, [None, float("nan")]) == b""


# ---------------------------------------------------------------------------------------------
# Costs and attributions end to end


def _importance(sa, sb):
    ma, mb = np.nanmean(np.abs(sa)), np.nanmean(np.abs(sb))
    return ma / (ma + mb), mb / (ma + mb)


def test_cost_per_1k_and_importance_from_a_table(db):
    model = unique("attr")
    db.models.create(
        {
            "id": model,
            "task": "binary",
            "window": "15m",
            "features": {"a": "numeric", "b": "numeric"},
        }
    )
    rng = np.random.default_rng(11)
    n = 400
    explained = np.arange(n) % 2 == 0  # attributions on half the rows
    # The reference's own attributions (mapped with attributions=): a matters most there too.
    ref = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "score": rng.random(n),
            "label": rng.integers(0, 2, n),
            "shap_a": np.where(explained, rng.normal(0, 2.0, n), np.nan),
            "shap_b": np.where(explained, rng.normal(0, 0.5, n), np.nan),
        }
    )
    s = db.upload_reference(model, "v1", ref, attributions={"a": "shap_a", "b": "shap_b"})
    assert (s.rows, s.rejected) == (n, 0)

    now = pd.Timestamp.now(tz="UTC").floor("s")
    df = pd.DataFrame(
        {
            "request_id": [f"attr-{i}" for i in range(n)],
            "ts": now - pd.to_timedelta(rng.integers(0, 600_000, n), unit="ms"),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "score": rng.random(n),
            "cost": rng.random(n) * 0.02,
            "attr.a": np.where(explained, rng.normal(0, 1.0, n), np.nan),
            "attr.b": np.where(explained, rng.normal(0, 0.4, n), np.nan),
        }
    )
    df.loc[df.index[::10], "cost"] = np.nan  # rows that report no cost
    r = db.ingest(df, model=model, version="v1", batch_size=150)
    assert (r.accepted, r.rejected) == (n, 0), r

    (c,) = db.query(f"cost_per_1k({model}) over 1h").rows
    assert c["feature"] == "$cost" and c["n"] == df["cost"].notna().sum()
    assert c["value"] == pytest.approx(1000 * df["cost"].mean(), rel=1e-9)

    res = db.query(f"importance({model}.*) over 1h")
    got = {row["feature"]: row for row in res.rows}
    assert sorted(got) == ["a", "b"]
    share_a, share_b = _importance(df["attr.a"], df["attr.b"])
    base_a, base_b = _importance(ref["shap_a"], ref["shap_b"])
    assert got["a"]["value"] == pytest.approx(share_a, rel=1e-9)
    assert got["b"]["value"] == pytest.approx(share_b, rel=1e-9)
    assert got["a"]["n"] == got["b"]["n"] == explained.sum()
    assert got["a"]["baseline"] == pytest.approx(base_a, rel=1e-9)
    assert got["b"]["baseline"] == pytest.approx(base_b, rel=1e-9)
    (d,) = db.query(f"importance_drift({model}) over 1h").rows
    assert d["value"] == pytest.approx(1.0)  # a ranks first on both sides

    # The server refuses rows with a negative cost or a non-finite attribution.
    bad = df.head(4).assign(request_id=[f"attr-bad-{i}" for i in range(4)])
    bad.loc[bad.index[0], "cost"] = -1.0
    bad.loc[bad.index[2], "attr.a"] = np.inf
    r = db.ingest(bad, model=model, version="v1")
    assert (r.accepted, r.rejected) == (2, 2)
    reasons = {e.row: e.reason for e in r.errors}
    assert "cost -1 is not a finite number" in reasons[0]
    assert "attribution of feature a" in reasons[2]

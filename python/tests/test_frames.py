"""Batch ingest from pandas, pyarrow and numpy: NaN/None, booleans, categoricals; idempotent
re-runs; labels and references from tables."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import small_model, unique

import driftdb

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

"""Generates the comparison's data the usual way (numpy + pandas + pyarrow):

- current.parquet / current.jsonl: ROWS inference rows (default 1,000,000) over one hour,
  request_id, ts, model_version, segments region and device, 10 features (8 numeric, 2
  categorical) and a binary score; the second half of the hour drifts in four features.
- reference.parquet / reference.jsonl: REF rows (default 50,000) of the undrifted
  distribution with an inline label.
- model.json: the driftdb model (its id is replaced per run).

Parquet is written by pandas.DataFrame.to_parquet (pyarrow, snappy): `ts` as
timestamp[ns, tz=UTC], strings as pandas writes them. JSONL is the documented nested form.
"""

import json
import os
import sys

import numpy as np
import pandas as pd

ROWS = int(os.environ.get("ROWS", "1000000"))
REF = int(os.environ.get("REF", "50000"))
OUT = sys.argv[1]
T0 = pd.Timestamp("2026-03-01T00:00:00Z")
NUM = [f"f{i}" for i in range(8)]
CAT = ["c0", "c1"]


def frame(n, seed, drift, prefix):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "request_id": [f"{prefix}{i}" for i in range(n)],
            "ts": (T0 + pd.to_timedelta(np.sort(rng.integers(0, 3_600_000, n)), unit="ms")).astype(
                "datetime64[ns, UTC]"
            ),
            "model_version": "v1",
            "region": rng.choice(["eu", "us", "apac", "latam"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "device": rng.choice(["web", "ios", "android"], n),
        }
    )
    late = np.arange(n) >= n // 2 if drift else np.zeros(n, dtype=bool)
    for j, f in enumerate(NUM):
        x = rng.normal(10.0 * j, 1.0 + j, n)
        if j < 3:
            x = np.where(late, x + 0.5 * (1.0 + j), x)
        df[f] = x
    df["c0"] = rng.choice([f"m{k}" for k in range(12)], n)
    c1 = rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])
    c1_drift = rng.choice(["a", "b", "c"], n, p=[0.4, 0.3, 0.3])
    df["c1"] = np.where(late, c1_drift, c1)
    df["score"] = 1.0 / (1.0 + np.exp(-(df["f0"] - 0.0) / 2.0 + rng.normal(0, 1, n)))
    return df


def jsonl(df, path, label=None):
    cols = {c: df[c].to_numpy() for c in df.columns}
    ts = df["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23).to_numpy()
    with open(path, "w") as f:
        for i in range(len(df)):
            row = {
                "request_id": cols["request_id"][i],
                "ts": ts[i] + "Z",
                "model_version": "v1",
                "segments": {"region": cols["region"][i], "device": cols["device"][i]},
                "features": {
                    **{k: float(cols[k][i]) for k in NUM},
                    **{k: cols[k][i] for k in CAT},
                },
                "score": float(cols["score"][i]),
            }
            if label is not None:
                row["label"] = int(label[i])
            f.write(json.dumps(row, separators=(",", ":")))
            f.write("\n")


os.makedirs(OUT, exist_ok=True)
cur = frame(ROWS, 1, True, "r")
cur.to_parquet(f"{OUT}/current.parquet", index=False)
jsonl(cur, f"{OUT}/current.jsonl")
ref = frame(REF, 2, False, "ref")
label = (np.random.default_rng(3).random(REF) < ref["score"]).astype(int)
ref_l = ref.assign(label=label)
ref_l.to_parquet(f"{OUT}/reference.parquet", index=False)
jsonl(ref, f"{OUT}/reference.jsonl", label)
model = {
    "id": "m",
    "task": "binary",
    "window": "15m",
    "segments": ["region", "device"],
    "features": {**{k: "numeric" for k in NUM}, **{k: "categorical" for k in CAT}},
}
with open(f"{OUT}/model.json", "w") as f:
    json.dump(model, f)
print(f"wrote {ROWS} current and {REF} reference rows to {OUT}")

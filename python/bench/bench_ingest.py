"""``Client.ingest`` of a pandas DataFrame: 1,000,000 rows x 12 columns.

    python bench/bench_ingest.py [--address HOST:PORT] [--rows 1000000] [--profile]

Columns: request_id, ts (datetime64), score, five numeric features (one with 5 % NaN), a
categorical (pandas Categorical), a string feature with None, a boolean feature, and one
segment key. Reports the end-to-end rate and where the time goes: the client's column
normalisation, its wire encoding, and the server (its CPU over the same interval).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import BenchServer, proc_cpu_seconds  # noqa: E402

import driftdb  # noqa: E402
from driftdb._frames import Frame, FrameEncoder  # noqa: E402
from driftdb._models import Schema  # noqa: E402


def model_def(model_id: str) -> dict:
    feats = {f"x{i}": "numeric" for i in range(5)}
    feats.update({"merchant": "categorical", "browser": "categorical", "is_new": "categorical"})
    return {
        "id": model_id,
        "task": "binary",
        "window": "15m",
        "segments": ["channel"],
        "features": feats,
    }


def make_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    df = pd.DataFrame(
        {
            "request_id": pd.Series(np.arange(n)).map("req-{:08d}".format),
            "ts": now - pd.to_timedelta(rng.integers(0, 3_000_000, n), unit="ms"),
            "score": rng.random(n),
        }
    )
    for i in range(5):
        x = rng.normal(i, 1 + i, n)
        if i == 0:
            x[rng.random(n) < 0.05] = np.nan
        df[f"x{i}"] = x
    df["merchant"] = pd.Categorical(rng.choice([f"mc{i:02d}" for i in range(25)], n))
    browser = rng.choice(["chrome", "safari", "firefox", "edge"], n).astype(object)
    browser[rng.random(n) < 0.01] = None
    df["browser"] = browser
    df["is_new"] = rng.random(n) < 0.2
    df["channel"] = rng.choice(["web", "app", "pos"], n)
    return df


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    df = make_frame(args.rows)
    assert len(df.columns) == 12
    n = len(df)

    # Client-only costs, no server involved.
    schema = Schema(model_def("m"))
    t = time.perf_counter()
    enc = FrameEncoder(schema, Frame(df), version="v1")
    t_norm = time.perf_counter() - t
    t = time.perf_counter()
    size = 0
    for a in range(0, n, args.batch_size):
        size += len(enc.encode(a, min(n, a + args.batch_size), "p", 1))
    t_enc = time.perf_counter() - t

    with BenchServer(args.address) as srv:
        db = driftdb.Client(srv.address)
        model = f"bench_{uuid.uuid4().hex[:8]}"
        db.models.create(model_def(model))
        prof = cProfile.Profile() if args.profile else None
        s0 = proc_cpu_seconds(srv.pid) if srv.pid else 0.0
        c0 = cpu()
        t = time.perf_counter()
        if prof:
            prof.enable()
        r = db.ingest(df, model=model, version="v1", batch_size=args.batch_size)
        if prof:
            prof.disable()
        t_all = time.perf_counter() - t
        c_all = cpu() - c0
        s_all = (proc_cpu_seconds(srv.pid) - s0) if srv.pid else float("nan")
        assert r.accepted == n, r
        rows = db.query(f"rows({model}.x1) over 2h").rows
        assert sum(x["value"] for x in rows) == n

    print(f"python {sys.version.split()[0]}, pandas {pd.__version__}, numpy {np.__version__}")
    print(
        f"{n:,} rows x {len(df.columns)} columns, batches of {args.batch_size:,} "
        f"({size / n:.0f} wire bytes/row)"
    )
    print(
        f"client only: normalise {t_norm:.2f}s ({n / t_norm:,.0f} rows/s), "
        f"encode {t_enc:.2f}s ({n / t_enc:,.0f} rows/s)"
    )
    print(
        f"end to end db.ingest: {t_all:.2f}s = {n / t_all:,.0f} rows/s; "
        f"client CPU {c_all:.2f}s, server CPU {s_all:.2f}s (2 cores shared)"
    )
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())


if __name__ == "__main__":
    main()

"""Monitor.log() cost, client CPU at 1,000 rows/s, and the rate one process sustains.

    python bench/bench_monitor.py [--address HOST:PORT] [--seconds 10] [--profile]

Starts its own ``driftdb serve`` (``$DRIFTDB_BIN``) unless ``--address`` is given. Rows have
50 features (40 numeric, 10 categorical), 2 segment keys, a score and a latency.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import BenchServer  # noqa: E402

import driftdb  # noqa: E402

N_NUM, N_CAT = 40, 10


def model_def(model_id: str) -> dict:
    feats = {f"n{i}": "numeric" for i in range(N_NUM)}
    feats.update({f"c{i}": "categorical" for i in range(N_CAT)})
    return {
        "id": model_id,
        "task": "binary",
        "window": "15m",
        "segments": ["channel", "country"],
        "features": feats,
    }


def make_rows(n: int) -> list:
    """Distinct feature dicts, as a service builds one per request."""
    rows = []
    for i in range(n):
        f = {f"n{j}": (i * 31 + j) % 997 / 7.0 for j in range(N_NUM)}
        f.update({f"c{j}": ("a", "b", "c", "d")[(i + j) % 4] for j in range(N_CAT)})
        rows.append(f)
    return rows


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def paced(seconds: float, rate: int, fn) -> int:
    """Calls fn(i) ``rate`` times a second for ``seconds``; returns the calls made."""
    start = time.perf_counter()
    n = int(seconds * rate)
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        fn(i)
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--burst", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the sender thread")
    args = ap.parse_args()

    with BenchServer(args.address) as srv:
        db = driftdb.Client(srv.address)
        feats = make_rows(4096)
        segs = [{"channel": ("web", "app", "pos")[i % 3], "country": "de"} for i in range(4096)]

        def new_monitor(**kw):
            model = f"bench_{uuid.uuid4().hex[:8]}"
            db.models.create(model_def(model))
            mon = db.monitor(model, version="v1", **kw)
            assert mon.ready(10)
            return mon

        # 1. Caller-thread cost of log(), each call timed on its own, back to back (the sender
        #    thread runs alongside and takes the GIL to encode batches, as in a busy service).
        pc = time.perf_counter_ns
        empty = []
        for _ in range(100_000):
            t = pc()
            empty.append(pc() - t)
        timer = statistics.median(empty)
        mon = new_monitor()
        rids = [f"w{i}" for i in range(args.burst)]
        lat = []
        for i in range(args.burst):
            k = i & 4095
            rid = rids[i]
            t = pc()
            mon.log(request_id=rid, features=feats[k], segments=segs[k], score=0.5, latency_ms=3.0)
            lat.append(pc() - t)
        assert mon.flush(120)
        lat.sort()
        b2b_med = lat[len(lat) // 2] - timer
        b2b_p99 = lat[int(len(lat) * 0.99)] - timer
        mon.close()

        # 2. At 1,000 rows/s: each call timed, and the total client CPU (caller, sender, ack
        #    and gRPC threads: the process's CPU) minus the same pacing loop without log().
        mon = new_monitor()
        lat = []
        rids = [f"r{i}" for i in range(int(args.seconds * args.rate))]

        def timed(i):
            k = i & 4095
            rid = rids[i]
            t = pc()
            mon.log(request_id=rid, features=feats[k], segments=segs[k], score=0.5, latency_ms=3.0)
            lat.append(pc() - t)

        noop_lat = []

        def noop(request_id=None, features=None, segments=None, score=None, latency_ms=None):
            return None

        def timed_noop(i):
            k = i & 4095
            rid = rids[i]
            t = pc()
            noop(request_id=rid, features=feats[k], segments=segs[k], score=0.5, latency_ms=3.0)
            noop_lat.append(pc() - t)

        c0 = cpu()
        paced(args.seconds, args.rate, timed_noop)
        base = cpu() - c0
        noop_lat.sort()
        noop_med = noop_lat[len(noop_lat) // 2] - timer
        c0 = cpu()
        s0 = mon.stats().sender_cpu_s
        sent = paced(args.seconds, args.rate, timed)
        assert mon.flush(60)
        total = cpu() - c0
        sender = mon.stats().sender_cpu_s - s0
        st = mon.stats()
        assert st.acked == sent, st
        lat.sort()
        med = lat[len(lat) // 2] - timer
        p99 = lat[int(len(lat) * 0.99)] - timer
        per_row = (total - base) / sent * 1e6
        caller = sum(lat) / 1e9
        mon.close()

        # 3. Sustained rate: one thread logs as fast as it can; time until all acknowledged.
        mon = new_monitor(batch_size=2000, max_queue=10_000_000, max_in_flight=4)
        gc.collect()
        n = args.burst
        t0 = time.perf_counter()
        c0 = cpu()
        for i in range(n):
            k = i & 4095
            mon.log(
                request_id=f"b{i}", features=feats[k], segments=segs[k], score=0.5, latency_ms=3.0
            )
        t_log = time.perf_counter() - t0
        assert mon.flush(300)
        t_all = time.perf_counter() - t0
        c_all = cpu() - c0
        st = mon.stats()
        assert st.acked == n, st
        mon.close()

        if args.profile:
            # The sender thread's work, profiled on its own: encode the same rows again.
            from driftdb._models import Schema
            from driftdb._rows import InferenceEncoder

            prof = cProfile.Profile()
            enc = InferenceEncoder(Schema(model_def("p")), "v1")
            rows = [
                (f"p{i}", time.time(), feats[i & 4095], segs[i & 4095], 0.5, 3.0, None)
                for i in range(20_000)
            ]
            prof.enable()
            for a in range(0, len(rows), 1000):
                enc.encode(rows[a : a + 1000], "p", a + 1)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
            print(out.getvalue())
            t = time.perf_counter()
            for a in range(0, len(rows), 1000):
                enc.encode(rows[a : a + 1000], "p", a + 1)
            print(f"encode alone: {(time.perf_counter() - t) / len(rows) * 1e6:.2f} us/row")

        print(f"python {sys.version.split()[0]}, driftdb client {driftdb.__version__}")
        print(f"row: {N_NUM} numeric + {N_CAT} categorical features, 2 segments, score, latency")
        print(
            f"log() caller cost, back to back ({args.burst} calls): median "
            f"{b2b_med / 1000:.2f} us, p99 {b2b_p99 / 1000:.2f} us "
            f"(timer overhead {timer:.0f} ns subtracted)"
        )
        print(
            f"log() caller cost at {args.rate} rows/s: median {med / 1000:.2f} us, "
            f"p99 {p99 / 1000:.2f} us (a no-op function with the same arguments, paced the "
            f"same way: median {noop_med / 1000:.2f} us)"
        )
        print(
            f"client CPU at {args.rate} rows/s over {args.seconds:.0f}s: {per_row:.2f} us/row "
            f"({(total - base) / args.seconds * 100:.2f} % of one core); of which caller "
            f"{caller / sent * 1e6:.2f} us (timed calls), sender thread "
            f"{sender / sent * 1e6:.2f} us, the rest (gRPC and ack threads) "
            f"{per_row - caller / sent * 1e6 - sender / sent * 1e6:.2f} us"
        )
        print(
            f"burst of {n} rows: log() loop {n / t_log:,.0f} rows/s "
            f"({t_log / n * 1e6:.2f} us/call); delivered and acked at {n / t_all:,.0f} rows/s; "
            f"client CPU {c_all / n * 1e6:.2f} us/row"
        )


if __name__ == "__main__":
    main()

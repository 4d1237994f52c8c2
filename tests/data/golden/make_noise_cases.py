#!/usr/bin/env python3
"""Golden cases for Wasserstein-1 at the noise level and for the KS p-value of a discrete
feature (docs/STATISTICS.md §6, §7, §16, §17), computed with numpy and scipy.

Writes noise_cases.json next to this script. Pinned environment (numpy's random streams are
not promised across releases):

    python3 -m venv target/golden-venv
    target/golden-venv/bin/pip install numpy==2.4.6 scipy==1.17.1
    target/golden-venv/bin/python tests/data/golden/make_noise_cases.py

Every feature has a 50,000-row reference and five 5,000-row windows: four drawn from the
reference's own distribution (W1 at the level of the sampling noise) and one drifted. Values
are integers divided by a per-feature scale (numbers with 2 or 3 decimals, or counts), so a
reader rebuilds exactly the doubles the expected numbers were computed on: `k / scale` is one
correctly rounded IEEE division in numpy and in any other language. They are stored sorted,
as a histogram (distinct integers delta-coded, with their counts); order plays no part in W1
or KS, and a test that feeds a sketch shuffles them itself.
"""

import hashlib
import json
import os
import sys

import numpy as np
import scipy
from scipy import special, stats

SEED = 20260302
REFERENCE_ROWS = 50_000
WINDOW_ROWS = 5_000
# Four undrifted windows, one drifted.
SHIFTS = [0.0, 0.0, 0.0, 0.0, 0.5]


def normal(rng, n, shift):
    return rng.normal(50.0 + 10.0 * shift, 10.0, n)


def uniform(rng, n, shift):
    return rng.uniform(0.0, 100.0, n) + 28.87 * shift


def lognormal(rng, n, shift):
    return np.exp(rng.normal(0.5 + 0.6 * shift, 0.6, n))


def poisson(rng, n, shift):
    return rng.poisson(4.0 + 2.0 * shift, n).astype(float)


def poisson_capped(rng, n, shift):
    # Capped at 7, where P(X >= 7) is above 2 %: every value the data takes (0 ... 7) is one
    # of the reference's 50-quantile edges, so every jump of either CDF sits on an edge.
    return np.minimum(rng.poisson(3.0 + shift, n), 7).astype(float)


FEATURES = [
    ("num_normal", 100, normal),
    ("num_uniform", 100, uniform),
    ("num_lognormal", 1000, lognormal),
    ("cnt_poisson", 1, poisson),
    ("cnt_poisson_capped", 1, poisson_capped),
]


def encode(ints):
    """Sorted integers as (first, deltas between distinct values, counts)."""
    values, counts = np.unique(ints, return_counts=True)
    deltas = np.diff(values)
    return {
        "first": int(values[0]),
        "deltas": [int(d) for d in deltas],
        "counts": [int(c) for c in counts],
    }


def decode(block, scale):
    values = np.cumsum(np.concatenate([[block["first"]], block["deltas"]]))
    ints = np.repeat(values, block["counts"])
    return ints.astype(np.int64) / float(scale)


def type7_edges(sorted_values, bins=50):
    raw = np.quantile(sorted_values, [k / bins for k in range(1, bins)], method="linear")
    return np.unique(raw)


def main():
    rng = np.random.default_rng(SEED)
    out = {
        "meta": {
            "generator": "tests/data/golden/make_noise_cases.py",
            "versions": {
                "python": sys.version.split()[0],
                "numpy": np.__version__,
                "scipy": scipy.__version__,
            },
            "seed": SEED,
            "reference_rows": REFERENCE_ROWS,
            "window_rows": WINDOW_ROWS,
            "shifts": SHIFTS,
            "encoding": "value = k / scale for the sorted integers k: first, then first + "
            "cumulative deltas, each repeated counts[i] times",
        },
        "features": {},
    }
    for name, scale, draw in FEATURES:
        ref_ints = np.sort(np.rint(draw(rng, REFERENCE_ROWS, 0.0) * scale).astype(np.int64))
        ref = ref_ints / float(scale)
        assert np.array_equal(decode(encode(ref_ints), scale), ref)
        edges = type7_edges(ref)
        feature = {
            "scale": scale,
            "reference": encode(ref_ints),
            "reference_std": float(np.std(ref, ddof=1)),
            "reference_edges_q50": [float(e) for e in edges],
            "windows": [],
        }
        for shift in SHIFTS:
            win_ints = np.sort(np.rint(draw(rng, WINDOW_ROWS, shift) * scale).astype(np.int64))
            win = win_ints / float(scale)
            w1 = stats.wasserstein_distance(ref, win)
            ks = stats.ks_2samp(ref, win, method="asymp")
            d = float(ks.statistic)
            n, m = len(ref), len(win)
            en = n * m / (n + m)
            p_kolmogorov = float(special.kolmogorov(np.sqrt(en) * d))
            # The written-out definition of docs/STATISTICS.md §6 against the library call.
            pooled = np.concatenate([ref, win])
            d_check = np.max(
                np.abs(
                    np.searchsorted(ref, pooled, side="right") / n
                    - np.searchsorted(win, pooled, side="right") / m
                )
            )
            assert abs(d_check - d) < 1e-15, (name, d_check, d)
            every_jump_on_an_edge = bool(
                np.all(np.isin(np.unique(np.concatenate([ref, win])), edges))
            )
            feature["windows"].append(
                {
                    "shift": shift,
                    "values": encode(win_ints),
                    "wasserstein": float(w1),
                    "ks_stat": d,
                    "ks_pvalue_kolmogorov": p_kolmogorov,
                    "ks_pvalue_kstwo": float(stats.kstwo.sf(d, int(round(en)))),
                    "ks_pvalue_scipy_asymp": float(ks.pvalue),
                    "every_jump_on_an_edge": every_jump_on_an_edge,
                }
            )
        if name == "cnt_poisson_capped":
            assert all(w["every_jump_on_an_edge"] for w in feature["windows"]), name
        out["features"][name] = feature

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "noise_cases.json")
    text = json.dumps(out, separators=(",", ":")) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(f"{path}: {len(text)} bytes, sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()

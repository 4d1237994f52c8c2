#!/usr/bin/env python3
"""Performance estimated without labels (confidence-based, CBPE) on the golden scenario,
computed with numpy and scikit-learn (docs/STATISTICS.md §20).

Writes cbpe_cases.json next to this script from reference.jsonl, windows.jsonl and labels.jsonl
(no randomness: the data is the scenario's). Environment:

    python3 -m venv target/golden-venv
    target/golden-venv/bin/pip install numpy scikit-learn
    target/golden-venv/bin/python tests/data/golden/make_cbpe_cases.py

This is the plain, row-level method driftdb's sketch version is judged against:

- calibration: `IsotonicRegression(out_of_bounds="clip")` fitted on the reference rows' raw
  scores and labels (per segment value for the by-segment cases, on that segment's reference
  rows), with no binning;
- for each window (and each window x segment value), every row's calibrated probability `q`;
  predicted positive when `score >= 0.5`; expected TP, FP, TN, FN as sums of `q` and `1 - q`;
  accuracy, precision, recall, F1 from those; expected ROC AUC as the Mann-Whitney ratio
  between the `q`-weighted and `(1 - q)`-weighted score distributions (ties count 1/2), i.e.
  the area under the curve of cumulative expected positives against expected negatives;
- standard errors: independent Bernoulli(q) outcomes, the delta method for the ratios and
  Hanley-McNeil for AUC (formulas in docs/STATISTICS.md §20);
- the realised metrics on the rows whose label is in labels.jsonl (scikit-learn's
  `roc_auc_score`, `accuracy_score` …), for judging how well the estimate tracks them.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
WINDOW_MS = 15 * 60 * 1000
SEGMENT_KEYS = ["channel", "country"]


def read_jsonl(name):
    with open(os.path.join(HERE, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def weighted_auc(scores, q):
    """Mann-Whitney ratio of the q-weighted over the (1-q)-weighted scores, ties 1/2."""
    order = np.argsort(scores, kind="stable")
    s, p, n = scores[order], q[order], 1.0 - q[order]
    uniq, start = np.unique(s, return_index=True)
    pos = np.add.reduceat(p, start)
    neg = np.add.reduceat(n, start)
    pos_above = np.cumsum(pos[::-1])[::-1] - pos
    num = np.sum(neg * (pos_above + 0.5 * pos))
    return float(num / (pos.sum() * neg.sum())), float(pos.sum()), float(neg.sum())


def hanley_mcneil(auc, n1, n2):
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    v = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n2 - 1) * (q2 - auc * auc)) / (n1 * n2)
    return float(np.sqrt(max(v, 0.0)))


def cbpe(cal, scores):
    q = np.clip(cal.predict(scores), 0.0, 1.0)
    pp = scores >= 0.5
    a = float(q[pp].sum())
    b = float(q[~pp].sum())
    var_a = float((q[pp] * (1 - q[pp])).sum())
    var_b = float((q[~pp] * (1 - q[~pp])).sum())
    n_pp = float(pp.sum())
    n = float(len(scores))
    tp, fn = a, b
    fp, tn = n_pp - a, (n - n_pp) - b
    out = {"n": int(n), "confusion": [tp, fp, tn, fn]}
    out["accuracy"] = (tp + tn) / n
    out["accuracy_se"] = np.sqrt(var_a + var_b) / n
    out["precision"] = a / n_pp if n_pp > 0 else None
    out["precision_se"] = np.sqrt(var_a) / n_pp if n_pp > 0 else None
    d = (a + b) ** 2
    out["recall"] = a / (a + b)
    out["recall_se"] = np.sqrt((b / d) ** 2 * var_a + (a / d) ** 2 * var_b)
    s = a + n_pp + b
    out["f1"] = 2 * a / s
    out["f1_se"] = np.sqrt((2 * (n_pp + b) / s**2) ** 2 * var_a + (2 * a / s**2) ** 2 * var_b)
    auc, n1, n2 = weighted_auc(scores, q)
    out["auc"] = auc
    out["auc_se"] = hanley_mcneil(auc, n1, n2)
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}


def realised(scores, labels):
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    pred = (scores >= 0.5).astype(int)
    return {
        "n_labeled": int(len(labels)),
        "auc": float(roc_auc_score(labels, scores)),
        "accuracy": float(accuracy_score(labels, pred)),
        "precision": float(precision_score(labels, pred, zero_division=np.nan)),
        "recall": float(recall_score(labels, pred, zero_division=np.nan)),
        "f1": float(f1_score(labels, pred, zero_division=np.nan)),
    }


def clean(x):
    """NaN (an undefined ratio) as null."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [clean(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def fit(rows):
    s = np.array([r["score"] for r in rows], dtype=float)
    y = np.array([r["label"] for r in rows], dtype=float)
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y)


def main():
    reference = read_jsonl("reference.jsonl")
    windows = read_jsonl("windows.jsonl")
    labels = {r["request_id"]: r["label"] for r in read_jsonl("labels.jsonl")}
    t0 = min(int(np.datetime64(r["ts"].rstrip("Z"), "ms").astype(np.int64)) for r in windows)
    t0 -= t0 % WINDOW_MS

    def window_of(r):
        ms = int(np.datetime64(r["ts"].rstrip("Z"), "ms").astype(np.int64))
        return (ms - t0) // WINDOW_MS

    cal_all = fit(reference)
    cal_seg = {
        (k, v): fit([r for r in reference if r["segments"][k] == v])
        for k in SEGMENT_KEYS
        for v in sorted({r["segments"][k] for r in reference})
    }

    def case(cal, rows):
        s = np.array([r["score"] for r in rows], dtype=float)
        lab = [(r["score"], labels[r["request_id"]]) for r in rows if r["request_id"] in labels]
        ls = np.array([x for x, _ in lab], dtype=float)
        ly = np.array([y for _, y in lab], dtype=int)
        return {"estimated": cbpe(cal, s), "realised": realised(ls, ly)}

    n_windows = max(window_of(r) for r in windows) + 1
    out_windows = []
    for w in range(n_windows):
        rows = [r for r in windows if window_of(r) == w]
        entry = {"window": w, "all": case(cal_all, rows), "by_segment": {}}
        for (k, v), cal in cal_seg.items():
            seg_rows = [r for r in rows if r["segments"][k] == v]
            if seg_rows:
                entry["by_segment"].setdefault(k, {})[v] = case(cal, seg_rows)
        out_windows.append(entry)
    result = {
        "meta": {
            "method": "CBPE: isotonic calibration on the reference's raw scores, row-level sums",
            "threshold": 0.5,
            "versions": {
                "python": sys.version.split()[0],
                "numpy": np.__version__,
                "scikit-learn": sklearn.__version__,
            },
        },
        "windows": out_windows,
    }
    with open(os.path.join(HERE, "cbpe_cases.json"), "w") as f:
        json.dump(clean(result), f, indent=1, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()

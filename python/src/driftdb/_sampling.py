"""The server's sampling rule (engine/src/ingest.rs ``sampled_in``), bit for bit."""

from __future__ import annotations

import zlib

_U32_MAX = 4294967295.0


def sampled_in(request_id: str, rate: float) -> bool:
    """Whether a model with sampling ``rate`` keeps ``request_id``.

    The server keeps a row when ``crc32(utf8(request_id)) / (2**32 - 1) < rate`` (CRC-32/IEEE,
    as zlib computes it), and keeps every row when ``rate >= 1``. Predictions and labels are
    filtered by the same rule, so a label is dropped exactly when its prediction was.
    """
    if rate >= 1.0:
        return True
    return zlib.crc32(request_id.encode("utf-8")) / _U32_MAX < rate

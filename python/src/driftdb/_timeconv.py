"""Event times to integer milliseconds since the epoch."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, List, Sequence

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_rfc3339(s: str) -> _dt.datetime:
    """An RFC 3339 / ISO 8601 timestamp (``Z`` or an offset; naive text is UTC)."""
    t = s.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    # Python < 3.11 accepts only 0, 3 or 6 fraction digits.
    if "." in t:
        head, _, rest = t.partition(".")
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tail = rest[:i], rest[i:]
        t = f"{head}.{(frac + '000000')[:6]}{tail}"
    d = _dt.datetime.fromisoformat(t)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d


def datetime_ms(d: _dt.datetime) -> int:
    """Milliseconds since the epoch, exactly (naive datetimes are taken as UTC)."""
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return (d - _EPOCH) // _MS


def to_ms(v: Any) -> int:
    """One event time: ``None`` (now), a ``datetime`` (naive = UTC), POSIX seconds as a number
    (what ``time.time()`` returns), RFC 3339 text, or a numpy ``datetime64``."""
    if v is None:
        return now_ms()
    if isinstance(v, float):
        return round(v * 1000.0)
    if isinstance(v, _dt.datetime):
        return datetime_ms(v)
    if isinstance(v, int):
        return v * 1000
    if isinstance(v, str):
        return datetime_ms(parse_rfc3339(v))
    if isinstance(v, _dt.date):
        return datetime_ms(_dt.datetime(v.year, v.month, v.day))
    t = type(v).__name__
    if t == "datetime64":
        return int(v.astype("datetime64[ms]").astype("int64"))
    return round(float(v) * 1000.0)


def many_to_ms(values: Sequence[Any]) -> List[int]:
    """``to_ms`` of each value, with a fast path for ``time.time()`` floats."""
    if set(map(type, values)) == {float}:
        return [round(t * 1000.0) for t in values]
    return [to_ms(v) for v in values]


def time_arg(v: Any) -> str:
    """A range bound for the server: RFC 3339 text, ``now-D`` text, a ``datetime`` or a
    ``timedelta`` (that long ago)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, _dt.timedelta):
        secs = int(v.total_seconds())
        return f"now-{secs}s" if secs > 0 else "now"
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        return v.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"expected RFC 3339 text, a datetime or a timedelta, got {type(v).__name__}")

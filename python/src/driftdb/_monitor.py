"""``Monitor`` (inferences) and ``LabelLogger`` (labels): log from a service, ship in the
background.

``log()`` does only this on the caller's thread: the sampling test (when the model samples),
a length check and one ``deque.append`` of a tuple. A daemon thread turns queued rows into
columnar batches and delivers them on one long-lived ingest call (see ``_delivery``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence

import grpc

from . import _fork
from ._delivery import Batch, Delivery
from ._models import Schema
from ._rows import InferenceEncoder, LabelEncoder, stats_from_ack
from ._sampling import sampled_in

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger("driftdb")

_U32 = 4294967295.0
_crc32 = zlib.crc32
_time = time.time
_monotonic = time.monotonic

INGEST_INFERENCES = "/driftdb.v1.Ingest/IngestInferences"
INGEST_LABELS = "/driftdb.v1.Ingest/IngestLabels"


def _count_value(c: "itertools.count[int]") -> int:
    # itertools.count is incremented atomically (one C call under the GIL); its repr is
    # "count(N)".
    return int(repr(c)[6:-1])


@dataclass(frozen=True)
class Stats:
    """Counters of a Monitor or LabelLogger, in rows (labels for a LabelLogger).

    - ``logged``: ``log()`` calls.
    - ``sampled_out``: rows the model's sampling rate drops (client side, the server's rule).
    - ``dropped``: rows dropped because the queue was full, the logger was closed, or close /
      exit ran out of time before they were delivered.
    - ``sent``: rows handed to the ingest call (each once, however often it was retried).
    - ``acked``: rows the server acknowledged after its durable write (the first time).
    - ``rejected``: rows the server refused (per row in an ack, or a whole batch refused).
    - ``retried``: rows sent again after a failed call (their batch kept its sequence).
    - ``replayed``: rows of batches the server reported as already applied (``replayed=true``):
      delivered by an attempt whose ack was lost; never counted twice.
    - ``queued`` / ``in_flight``: rows waiting in the queue / sent and not yet acknowledged.
    - ``errors``: rows that failed inside the client: a ``log()`` call that raised inside
      (counted instead of raising), or a row the sender thread could not encode.
    - ``server``: the server's own counters summed over acks (``accepted``, ``duplicates``,
      ``invalid_values``, ``server_sampled_out``; ``joined``/``pending`` for labels).
    - ``last_error``: the last delivery problem, if any (for example ``UNAVAILABLE: ...``).
    - ``sender_cpu_s``: CPU seconds the sender thread used (building and sending batches).

    Once everything is delivered, ``logged == sampled_out + dropped + sent + errors`` and
    ``sent == acked + rejected + replayed``. Rows given up at ``close()`` or exit are counted in
    ``dropped``; those of them that were already sent stay in ``sent`` too (they may have been
    applied).
    """

    logged: int
    sampled_out: int
    dropped: int
    sent: int
    acked: int
    rejected: int
    retried: int
    replayed: int
    queued: int
    in_flight: int
    errors: int
    server: Dict[str, int] = field(default_factory=dict)
    last_error: Optional[str] = None
    sender_cpu_s: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class _Shipper:
    """What Monitor and LabelLogger share: the queue, the sender thread, delivery, stats."""

    _path = ""
    _kind = ""

    def __init__(
        self,
        client: "Client",
        model: str,
        *,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        max_in_flight: int,
    ) -> None:
        if not model:
            raise ValueError("model must be a model id")
        if not 1 <= int(batch_size) <= 100_000:
            raise ValueError("batch_size must be in 1..=100000 (the server's limit)")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._client = client
        self.model = model
        self._batch_size = int(batch_size)
        self._flush_interval = float(flush_interval)
        self._queue_limit = int(max_queue)
        self._max_in_flight = int(max_in_flight)
        self._schema: Optional[Schema] = None
        self._rate = 1.0
        self._init_state()
        _fork.track(self)
        _fork.track_shipper(self)

    # -- state --------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._q: deque = deque()
        self._max_queue = self._queue_limit
        self._lock = threading.Condition()
        self._event = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._producer = f"py-{uuid.uuid4().hex}"
        self._seq = 0
        self._n_sampled = itertools.count()
        self._n_dropped = itertools.count()
        self._n_errors = itertools.count()
        # Under _lock:
        self._popped = 0
        self._done = 0
        self._flush_target = 0
        self._sent = 0
        self._acked = 0
        self._rejected = 0
        self._replayed = 0
        self._sampled_late = 0
        self._encode_failed = 0
        self._abandoned = 0
        self._sender_cpu = 0.0
        self._server: Dict[str, int] = {}
        self._last_error: Optional[str] = None
        self._closing = False
        self._closed = False
        self._deadline = 0.0
        self._delivery: Optional[Delivery] = None
        self._encoder: Any = None
        self._schema_next_try = 0.0
        self._schema_backoff = 0.1
        self._last_batch = _monotonic()

    def _after_fork_child(self) -> None:
        # The parent delivers what it had queued; the child starts empty, with its own
        # producer id (sequences restart) and no inherited call or thread.
        if self._delivery is not None:
            _fork.orphan(self._delivery)
        closed = self._closed
        encoder = self._encoder
        self._init_state()
        self._encoder = encoder  # the model's definition (and sampling rate) still hold
        if encoder is None:
            self._schema = None
        if closed:
            self._closed = True
            self._max_queue = 0

    def _quiesce_for_fork(self) -> None:
        d = self._delivery
        if d is not None:
            d.quiesce()

    @property
    def producer_id(self) -> str:
        """The producer id this process's batches carry (new in a forked child)."""
        return self._producer

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                t = threading.Thread(
                    target=self._run, name=f"driftdb-{self._kind}-{self.model}", daemon=True
                )
                self._thread = t
                t.start()

    # -- sender thread --------------------------------------------------------------------------

    def _run(self) -> None:
        ev = self._event
        cpu = time.thread_time
        while True:
            ev.clear()
            c0 = cpu()
            try:
                timeout = self._step()
            except Exception as e:  # never let the thread die
                log.exception("driftdb: %s sender failed; continuing", self._kind)
                with self._lock:
                    self._last_error = f"{type(e).__name__}: {e}"
                timeout = 1.0
            self._sender_cpu += cpu() - c0
            if timeout is None:
                return
            ev.wait(timeout)

    def _load_schema(self, now: float) -> bool:
        if now < self._schema_next_try:
            return False
        try:
            spec = self._client._model_spec(self.model, timeout=5.0)
        except Exception as e:
            with self._lock:
                self._last_error = str(e)
            self._schema_next_try = now + self._schema_backoff
            self._schema_backoff = min(self._schema_backoff * 2, 10.0)
            return False
        self._schema = Schema(spec)
        self._rate = self._schema.sampling
        self._encoder = self._make_encoder(self._schema)
        self._schema_backoff = 0.1
        return True

    def _make_encoder(self, schema: Schema) -> Any:
        raise NotImplementedError

    def _new_delivery(self) -> Delivery:
        client = self._client
        return Delivery(
            client._make_channel,
            self._path,
            self._response_type(),
            client._metadata,
            max_in_flight=self._max_in_flight,
            lock=self._lock,
            on_ack=self._on_ack,
            on_reject=self._on_reject,
            wake=self._event.set,
        )

    def _response_type(self) -> Any:
        raise NotImplementedError

    def _on_ack(self, b: Batch, ack: Any) -> None:  # under _lock
        if ack.replayed:
            self._replayed += b.rows
        else:
            counts = stats_from_ack(ack)
            self._acked += b.rows - counts["rejected"]
            self._rejected += counts["rejected"]
            srv = self._server
            for k, v in counts.items():
                srv[k] = srv.get(k, 0) + v
        self._done += b.rows

    def _on_reject(self, b: Batch, err: BaseException) -> None:  # under _lock
        self._rejected += b.rows
        self._done += b.rows
        detail = err.details() if isinstance(err, grpc.RpcError) else str(err)  # type: ignore[attr-defined]
        self._last_error = f"batch of {b.rows} refused: {detail}"
        log.warning("driftdb: the server refused a batch of %d %s: %s", b.rows, self._kind, detail)
        # The model definition may have changed under us: read it again.
        self._schema = None

    def _abandon(self) -> None:
        d = self._delivery
        in_flight = d.abandon() if d is not None else 0
        with self._lock:
            queued = len(self._q)
            self._q.clear()
            n = queued + in_flight
            self._abandoned += n
            self._popped += queued
            self._done = self._popped  # nothing more will complete
            self._lock.notify_all()
        if n:
            log.warning("driftdb: %d %s not delivered before the deadline", n, self._kind)

    def _filter_late(self, rows: list) -> list:
        """Applies sampling to rows queued before the model's rate was known."""
        rate = self._rate
        if rate >= 1.0:
            return rows
        kept = [r for r in rows if sampled_in(str(r[0]), rate)]
        if len(kept) != len(rows):
            with self._lock:
                self._sampled_late += len(rows) - len(kept)
                self._done += len(rows) - len(kept)
                self._lock.notify_all()
        return kept

    def _step(self) -> Optional[float]:
        now = _monotonic()
        q = self._q
        if self._schema is None and not self._load_schema(now):
            if self._closing and (now >= self._deadline or not q):
                self._abandon()
                return None
            wait = max(0.01, self._schema_next_try - now)
            return min(wait, max(0.01, self._deadline - now)) if self._closing else wait
        d = self._delivery
        if d is None:
            d = self._delivery = self._new_delivery()
        wait = d.service()
        bs = self._batch_size
        fi = self._flush_interval
        while q and d.has_room():
            n = len(q)
            if not (
                n >= bs
                or self._closing
                or self._popped < self._flush_target
                or now - self._last_batch >= fi
            ):
                break
            k = n if n < bs else bs
            popleft = q.popleft
            with self._lock:  # flush() reads _popped + len(q) under the same lock
                rows = [popleft() for _ in range(k)]
                self._popped += k
            self._last_batch = now
            rows = self._filter_late(rows)
            if not rows:
                continue
            k = len(rows)
            self._seq += 1
            try:
                payload = self._encoder.encode(rows, self._producer, self._seq)
            except Exception as e:
                self._seq -= 1
                log.exception("driftdb: could not encode %d %s", k, self._kind)
                with self._lock:
                    self._encode_failed += k
                    self._done += k
                    self._last_error = f"encode: {type(e).__name__}: {e}"
                    self._lock.notify_all()
                continue
            with self._lock:
                self._sent += k
            d.submit(self._seq, payload, k)
        if self._closing:
            if not q and d.idle():
                d.close()
                return None
            if now >= self._deadline:
                d.close(cancel=True)
                self._abandon()
                return None
            return max(0.005, min(wait, self._deadline - now, 0.25))
        if q and d.has_room():
            return max(0.001, min(wait, fi - (now - self._last_batch)))
        return min(wait, max(fi, 1.0))

    # -- public -----------------------------------------------------------------------------------

    def ready(self, timeout: Optional[float] = None) -> bool:
        """Waits until the model's definition has been read (the sampling rate applies from
        then on); returns whether it has."""
        if self._thread is None:
            self._start()
        end = None if timeout is None else _monotonic() + timeout
        while self._schema is None:
            if end is not None and _monotonic() >= end:
                return False
            self._event.set()
            time.sleep(0.01)
        return True

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything logged so far and waits until the server has acknowledged (or
        refused) it. Returns False if ``timeout`` seconds passed first. Never raises."""
        end = None if timeout is None else _monotonic() + timeout
        with self._lock:
            target = self._popped + len(self._q)
            if self._done >= target:
                return True
            self._flush_target = max(self._flush_target, target)
        if self._thread is None:
            self._start()
        self._event.set()
        with self._lock:
            while self._done < target:
                if self._closed and self._thread is None:
                    return False
                remaining = None if end is None else end - _monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    async def aflush(self, timeout: Optional[float] = None) -> bool:
        """``flush`` for asyncio: waits in a worker thread, not on the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.flush, timeout)

    def _begin_close(self, deadline: float) -> None:
        with self._lock:
            if self._closing or self._closed:
                return
            self._closing = True
            self._deadline = deadline
            self._max_queue = 0  # log() after close counts as dropped
        if self._thread is None and self._q:
            self._start()
        self._event.set()

    def _finish_close(self, deadline: float) -> bool:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(max(0.0, deadline - _monotonic()) + 1.0)
        if self._q and (t is None or not t.is_alive()):
            self._abandon()
        with self._lock:
            self._closed = True
            ok = self._abandoned == 0 and not self._q
            self._lock.notify_all()
        return ok

    def close(self, timeout: float = 10.0) -> bool:
        """Delivers what is queued (waiting at most ``timeout`` seconds), then stops the
        sender. Later ``log()`` calls count as dropped. Returns whether nothing was lost."""
        deadline = _monotonic() + timeout
        self._begin_close(deadline)
        return self._finish_close(deadline)

    def __enter__(self) -> "_Shipper":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def stats(self) -> Stats:
        """A snapshot of the counters (see ``Stats``)."""
        d = self._delivery
        with self._lock:
            n_sampled = _count_value(self._n_sampled)
            n_dropped = _count_value(self._n_dropped)
            n_errors = _count_value(self._n_errors)
            in_flight = sum(b.rows for b in d.pending) if d is not None else 0
            return Stats(
                # Every call ends queued, taken by the sender, sampled out, dropped or failed.
                logged=self._popped + len(self._q) + n_sampled + n_dropped + n_errors,
                sampled_out=n_sampled + self._sampled_late,
                dropped=n_dropped + self._abandoned,
                sent=self._sent,
                acked=self._acked,
                rejected=self._rejected,
                retried=d.retried_rows if d is not None else 0,
                replayed=self._replayed,
                queued=len(self._q),
                in_flight=in_flight,
                errors=n_errors + self._encode_failed,
                server=dict(self._server),
                last_error=self._last_error or (d.last_error if d is not None else None),
                sender_cpu_s=self._sender_cpu,
            )


class Monitor(_Shipper):
    """Logs a model's inferences from a service; made by ``Client.monitor``.

    ``log()`` returns at once and never raises; rows are batched and delivered by a daemon
    thread (see ``Stats`` for what is counted, and the package README for the guarantees).
    """

    _path = INGEST_INFERENCES
    _kind = "inferences"

    def __init__(
        self,
        client: "Client",
        model: str,
        *,
        version: str,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        max_in_flight: int = 4,
    ) -> None:
        if not version:
            raise ValueError("version must name the model version that served the inferences")
        self.version = version
        super().__init__(
            client,
            model,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            max_in_flight=max_in_flight,
        )

    def _make_encoder(self, schema: Schema) -> Any:
        return InferenceEncoder(schema, self.version)

    def _response_type(self) -> Any:
        from ._proto.driftdb.v1 import ingest_pb2

        return ingest_pb2.BatchAck

    def log(
        self,
        request_id: Any = None,
        features: Optional[Mapping[str, Any]] = None,
        segments: Optional[Mapping[str, Any]] = None,
        score: Optional[float] = None,
        prediction: Optional[float] = None,
        items: Optional[Sequence[Any]] = None,
        latency_ms: Optional[float] = None,
        ts: Any = None,
        cost: Optional[float] = None,
        attributions: Optional[Mapping[str, float]] = None,
    ) -> None:
        """Queues one inference; returns at once and never raises.

        ``request_id`` joins the label later (a uuid4 is made when ``None``); ``features`` maps
        feature names to numbers (numeric features) or strings/booleans (categorical ones),
        ``None`` or NaN being missing; ``segments`` maps segment keys to values; ``score`` is
        the model's score, or ``prediction`` for regression models (used when ``score`` is
        None); ``items`` the ranked ``(id, score)`` pairs of a ranking model; ``ts`` the event
        time (``None``: now; a ``datetime``, POSIX seconds, or RFC 3339 text); ``cost`` the
        cost of serving it (a number >= 0; DriftQL ``cost_per_1k``); ``attributions`` maps
        model features to their attribution for this inference (e.g. SHAP values; DriftQL
        ``importance``), for the requests you explain.

        The mappings are kept as they are and read on the sender thread: pass a mapping you
        will not change afterwards (a new dict per call, as usual).
        """
        try:
            if request_id is None:
                request_id = uuid.uuid4().hex
            rate = self._rate
            if rate < 1.0:
                rid = request_id if isinstance(request_id, str) else str(request_id)
                if _crc32(rid.encode("utf-8")) / _U32 >= rate:
                    next(self._n_sampled)
                    return
            q = self._q
            if len(q) >= self._max_queue:
                next(self._n_dropped)
                return
            q.append(
                (
                    request_id,
                    _time() if ts is None else ts,
                    features,
                    segments,
                    prediction if score is None else score,
                    latency_ms,
                    items,
                    cost,
                    attributions,
                )
            )
            if len(q) % self._batch_size == 0:
                self._event.set()
            if self._thread is None:
                self._start()
        except Exception:
            next(self._n_errors)


class LabelLogger(_Shipper):
    """Logs labels (ground truth) and outcomes as they arrive; made by ``Client.labels``.

    Labels are sampled with the model's rate like predictions, so the label of a sampled-out
    prediction is never sent (it would wait for a prediction that never comes).
    """

    _path = INGEST_LABELS
    _kind = "labels"

    def __init__(
        self,
        client: "Client",
        model: str,
        *,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        max_in_flight: int = 4,
    ) -> None:
        super().__init__(
            client,
            model,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            max_in_flight=max_in_flight,
        )

    def _make_encoder(self, schema: Schema) -> Any:
        return LabelEncoder(schema.model_id)

    def _response_type(self) -> Any:
        from ._proto.driftdb.v1 import ingest_pb2

        return ingest_pb2.LabelAck

    def log(
        self,
        request_id: Any,
        label: Any = None,
        outcomes: Optional[Mapping[str, Any]] = None,
        ts: Any = None,
    ) -> None:
        """Queues one label; returns at once and never raises.

        ``label`` is the ground truth (0/1 or a bool for binary models, a class index or a
        number); ``outcomes`` holds ranking outcomes (``click``, ``purchase``, ``revenue``,
        ``dwell_ms``, ``relevance``); ``ts`` is when the label arrived (default now).
        """
        try:
            rate = self._rate
            if rate < 1.0:
                rid = request_id if isinstance(request_id, str) else str(request_id)
                if _crc32(rid.encode("utf-8")) / _U32 >= rate:
                    next(self._n_sampled)
                    return
            q = self._q
            if len(q) >= self._max_queue:
                next(self._n_dropped)
                return
            q.append((request_id, _time() if ts is None else ts, label, outcomes))
            if len(q) % self._batch_size == 0:
                self._event.set()
            if self._thread is None:
                self._start()
        except Exception:
            next(self._n_errors)

"""Delivery of encoded batches on one long-lived bidirectional ingest call.

A ``Delivery`` keeps the batches sent but not yet acknowledged, in sequence order, at most
``max_in_flight`` of them. Acks arrive on a reader thread and release the oldest batch. When
the call fails (server restart, overload, network), the owner thread opens a new call after a
backoff (or the server's ``retry-after-ms`` hint) and sends every unacknowledged batch again,
unchanged: same producer id, same sequence, so the server applies each batch once and answers
``replayed=true`` for one it had applied before the failure.

Only the owner thread (the Monitor's sender thread, or the caller of ``Client.ingest``) calls
``submit`` and ``service``; the reader thread calls ``_on_ack`` / ``_on_end``; both hold
``lock``.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Optional

import grpc

from . import _fork
from ._errors import retry_after

log = logging.getLogger("driftdb")

MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
MAX_HINT = 60.0


class Batch:
    __slots__ = ("seq", "payload", "rows", "sent")

    def __init__(self, seq: int, payload: bytes, rows: int) -> None:
        self.seq = seq
        self.payload = payload
        self.rows = rows
        self.sent = False


_END = object()


class _Stream:
    """One bidirectional call: ``send`` queues a request, a reader thread hands each response
    to the delivery."""

    def __init__(self, delivery: "Delivery", method: Any, metadata: Any) -> None:
        self._delivery = delivery
        self._q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.call = method(self._requests(), metadata=metadata, wait_for_ready=False)
        self.thread = threading.Thread(target=self._read, name="driftdb-acks", daemon=True)
        self.thread.start()

    def _requests(self) -> Any:
        get = self._q.get
        while True:
            item = get()
            if item is _END:
                return
            yield item

    def send(self, payload: bytes) -> None:
        self._q.put(payload)

    def close(self) -> None:
        """Ends the request side; the server answers what it has and ends the call."""
        self._q.put(_END)

    def cancel(self) -> None:
        self._q.put(_END)
        try:
            self.call.cancel()
        except Exception:
            pass

    def _read(self) -> None:
        err: Optional[BaseException] = None
        try:
            for ack in self.call:
                self._delivery._on_ack(self, ack)
        except grpc.RpcError as e:
            err = e
        except Exception as e:  # a deserialisation failure, or anything unexpected
            err = e
        self._q.put(_END)
        self._delivery._on_end(self, err)


class Delivery:
    """Batches in flight on one call, with replay on failure (see the module docs).

    ``on_ack(batch, ack)`` runs for each acknowledged batch and ``on_reject(batch, error)`` for
    a batch the server refused as a whole (a code in ``reject_codes``), both under ``lock``;
    ``wake()`` is called after either and after a failure. A failure with a code in
    ``fatal_codes`` is kept in ``fatal`` and not retried.
    """

    def __init__(
        self,
        make_channel: Callable[[], Any],
        path: str,
        response_type: Any,
        metadata: Any,
        *,
        max_in_flight: int,
        lock: threading.Condition,
        on_ack: Callable[[Batch, Any], None],
        on_reject: Callable[[Batch, BaseException], None],
        wake: Callable[[], None],
        reject_codes: "frozenset[grpc.StatusCode]" = frozenset({grpc.StatusCode.INVALID_ARGUMENT}),
        fatal_codes: "frozenset[grpc.StatusCode]" = frozenset(),
        idle_close: float = 30.0,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self._make_channel = make_channel
        self._path = path
        self._response_type = response_type
        self._channel: Any = None
        self._method: Any = None
        self._failures_in_row = 0
        self._metadata = metadata
        self.max_in_flight = max(1, int(max_in_flight))
        self.lock = lock
        self._on_ack_cb = on_ack
        self._on_reject_cb = on_reject
        self._wake = wake
        self._reject_codes = reject_codes
        self._fatal_codes = fatal_codes
        self._idle_close = idle_close
        self._max_backoff = max_backoff
        self.pending: Deque[Batch] = deque()
        self._stream: Optional[_Stream] = None
        self._failure: Optional[BaseException] = None
        self._backoff = MIN_BACKOFF
        self._next_try = 0.0
        self._last_activity = time.monotonic()
        self.fatal: Optional[BaseException] = None
        self.last_error: Optional[str] = None
        self.retried_rows = 0
        self.retried_batches = 0
        self.failures = 0

    # -- reader thread ------------------------------------------------------------------------

    def _on_ack(self, stream: _Stream, ack: Any) -> None:
        with self.lock:
            if stream is not self._stream:
                return
            self._last_activity = time.monotonic()
            if not self.pending:
                log.warning("driftdb: ack for sequence %s with no batch in flight", ack.sequence)
                return
            b = self.pending[0]
            if ack.sequence != b.seq:
                log.warning(
                    "driftdb: ack for sequence %s, expected %s; taking it for the oldest batch",
                    ack.sequence,
                    b.seq,
                )
            self.pending.popleft()
            self._backoff = MIN_BACKOFF
            self._failures_in_row = 0
            self._on_ack_cb(b, ack)
            self.lock.notify_all()
        self._wake()

    def _on_end(self, stream: _Stream, err: Optional[BaseException]) -> None:
        with self.lock:
            if stream is not self._stream:
                return
            if err is None and not self.pending:
                # Closed by us when idle, or by the server: nothing was lost.
                self._stream = None
            else:
                if err is None:
                    err = ConnectionError("the server ended the ingest call")
                self._failure = err
            self.lock.notify_all()
        self._wake()

    # -- owner thread ---------------------------------------------------------------------------

    def has_room(self) -> bool:
        return len(self.pending) < self.max_in_flight and self.fatal is None

    def idle(self) -> bool:
        return not self.pending

    def submit(self, seq: int, payload: bytes, rows: int) -> None:
        """Queues a batch (the caller checked ``has_room``) and sends it if a call is up."""
        b = Batch(seq, payload, rows)
        with self.lock:
            self.pending.append(b)
            stream = self._stream if self._failure is None else None
            if stream is not None:
                b.sent = True
                stream.send(payload)
                self._last_activity = time.monotonic()
        if stream is None:
            self.service()

    def service(self) -> float:
        """Handles a failed call (backoff, then a new call that replays the unacknowledged
        batches) and closes an idle one. Returns how long until it wants to run again."""
        now = time.monotonic()
        with self.lock:
            if self._failure is not None:
                self._handle_failure(now)
            if self.fatal is not None:
                return 3600.0
            if self._stream is None:
                if not self.pending:
                    return 3600.0
                if now < self._next_try:
                    return self._next_try - now
                self._open(now)
                return self._idle_close if self._stream is not None else 0.01
            if not self.pending and now - self._last_activity >= self._idle_close:
                self._stream.close()
                self._stream = None
                return 3600.0
            return max(0.05, self._idle_close - (now - self._last_activity))

    def _handle_failure(self, now: float) -> None:
        err = self._failure
        self._failure = None
        old, self._stream = self._stream, None
        if old is not None:
            old.cancel()
        self.failures += 1
        self._failures_in_row += 1
        if self._failures_in_row >= 3 and self._channel is not None:
            # Some grpcio releases leave a channel unable to reconnect after its server
            # restarted; this delivery has a channel of its own, so start afresh.
            ch, self._channel, self._method = self._channel, None, None
            try:
                ch.close()
            except Exception:
                pass
        code = err.code() if isinstance(err, grpc.RpcError) else None  # type: ignore[attr-defined]
        detail = err.details() if isinstance(err, grpc.RpcError) else str(err)  # type: ignore[attr-defined]
        self.last_error = f"{code.name if code else type(err).__name__}: {detail}"
        if code in self._fatal_codes:
            self.fatal = err
            self.lock.notify_all()
            return
        if code in self._reject_codes and self.pending:
            bad = self.pending.popleft()
            self._on_reject_cb(bad, err)
            self.lock.notify_all()
            self._next_try = now
            return
        hint = retry_after(err) if isinstance(err, grpc.RpcError) else None
        if hint is not None:
            delay = min(hint, MAX_HINT)
        else:
            delay = self._backoff * (0.8 + 0.4 * random.random())
            self._backoff = min(self._backoff * 2.0, self._max_backoff)
        self._next_try = now + delay
        log.debug("driftdb: ingest call failed (%s); retrying in %.2fs", self.last_error, delay)

    def quiesce(self, timeout: float = 1.0) -> None:
        """Ends the current call and waits for its reader thread to leave gRPC (before a
        fork); unacknowledged batches stay pending and are sent again on the next call."""
        with self.lock:
            s, self._stream = self._stream, None
            self._failure = None
        if s is not None:
            s.cancel()
            s.thread.join(timeout)

    def _open(self, now: float) -> None:
        if _fork.forking():
            self._next_try = now + 0.01
            return
        if self._method is None:
            if self._channel is None:
                self._channel = self._make_channel()
            self._method = self._channel.stream_stream(
                self._path,
                request_serializer=None,
                response_deserializer=self._response_type.FromString,
            )
        self._stream = _Stream(self, self._method, self._metadata)
        self._last_activity = now
        for b in self.pending:
            if b.sent:
                self.retried_rows += b.rows
                self.retried_batches += 1
            b.sent = True
            self._stream.send(b.payload)

    def wait(self, timeout: float) -> None:
        """Waits (holding nothing) until an ack, a failure or ``timeout``."""
        with self.lock:
            self.lock.wait(timeout)

    def close(self, cancel: bool = False) -> None:
        """Ends the call (cancelled, or after the server answered what it has) and closes the
        channel."""
        with self.lock:
            s, self._stream = self._stream, None
            ch, self._channel, self._method = self._channel, None, None
        if s is not None:
            if cancel:
                s.cancel()
            else:
                s.close()
                s.thread.join(5.0)
        if ch is not None:
            ch.close()

    def abandon(self) -> int:
        """Drops every unacknowledged batch; returns their rows."""
        with self.lock:
            n = sum(b.rows for b in self.pending)
            self.pending.clear()
            return n

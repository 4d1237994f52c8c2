"""Process-level hooks: discard inherited gRPC state in a forked child, flush monitors at exit."""

from __future__ import annotations

import atexit
import gc
import os
import threading
import time
import weakref
from typing import Any, List

_live: "weakref.WeakSet[Any]" = weakref.WeakSet()
_shippers: "weakref.WeakSet[Any]" = weakref.WeakSet()
# Objects inherited from the parent (channels, calls) that the child must neither use nor let
# the garbage collector finalise (finalising a gRPC channel talks to the parent's core state).
_orphans: List[Any] = []
_atexit_registered = False
_lock = threading.Lock()

# Seconds all monitors together get to deliver what is queued when the interpreter exits.
ATEXIT_TIMEOUT = float(os.environ.get("DRIFTDB_ATEXIT_TIMEOUT", "5"))


def track(obj: Any) -> None:
    """Calls ``obj._after_fork_child()`` in every child forked after this."""
    _live.add(obj)


def orphan(obj: Any) -> None:
    if obj is not None:
        _orphans.append(obj)


_forking = False
# Set once this process has made a gRPC channel.
_grpc_used = False


def grpc_used() -> None:
    """Records that this process has gRPC state a forked child must never finalise."""
    global _grpc_used
    _grpc_used = True


def forking() -> bool:
    """Whether a fork is under way (no new gRPC call may start)."""
    return _forking


def _before_fork() -> None:
    # gRPC core runs its own fork handlers only when no thread is inside gRPC ("Other threads
    # are currently calling into gRPC, skipping fork() handlers"); without them a child's new
    # channel cannot connect on several grpcio releases. So end our long-lived ingest calls
    # and wait for their reader threads to leave gRPC. The parent reopens them after the fork
    # and sends the unacknowledged batches again (same producer and sequence: no double count).
    global _forking
    _forking = True
    for obj in list(_shippers):
        try:
            obj._quiesce_for_fork()
        except Exception:
            pass


def _after_fork_parent() -> None:
    global _forking
    _forking = False
    for obj in list(_shippers):
        try:
            obj._event.set()
        except Exception:
            pass


def _after_fork_child() -> None:
    global _lock, _forking
    _forking = False
    _lock = threading.Lock()
    if _grpc_used:
        # Cyclic garbage inherited from the parent may hold gRPC calls whose locks a parent
        # thread held at the fork; collecting it in the child runs their finalisers, which
        # wait on those locks forever. Freeze what was inherited: the collector never visits
        # it again (objects made in the child are collected as usual).
        gc.freeze()
    for obj in list(_live):
        try:
            obj._after_fork_child()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_parent,
        after_in_child=_after_fork_child,
    )


def track_shipper(obj: Any) -> None:
    """Flushes and closes ``obj`` (a Monitor or LabelLogger) at interpreter exit."""
    global _atexit_registered
    _shippers.add(obj)
    with _lock:
        if not _atexit_registered:
            # Registered after grpc was imported, so it runs before grpc's own exit handlers.
            atexit.register(_close_all_at_exit)
            _atexit_registered = True


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + ATEXIT_TIMEOUT
    shippers = list(_shippers)
    for s in shippers:
        try:
            s._begin_close(deadline)
        except Exception:
            pass
    for s in shippers:
        try:
            s._finish_close(deadline)
        except Exception:
            pass

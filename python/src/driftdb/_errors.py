"""Typed exceptions, one per gRPC status code the server uses, carrying the server's message."""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = [
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "DriftDBError",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
    "retry_after",
]


class DriftDBError(Exception):
    """Any error from a driftdb call.

    ``code`` is the gRPC status code (``grpc.StatusCode``), ``message`` the server's message
    (for example ``unknown feature "x" for model "fraud"``), ``retry_after`` the server's retry
    hint in seconds (RESOURCE_EXHAUSTED and UNAVAILABLE answers; ``None`` otherwise).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.message else self.code.name


class InvalidArgument(DriftDBError):
    """The request is malformed: a DriftQL syntax error, an unknown feature, a bad rule."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DriftDBError):
    """The model, rule or key does not exist (or belongs to another team)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DriftDBError):
    """A model or reference profile with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(DriftDBError):
    """The server refused for overload; ``retry_after`` holds its hint in seconds."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(DriftDBError):
    """The request cannot run in the current state (for example no reference profile)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(DriftDBError):
    """No API key, or an unknown or revoked one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DriftDBError):
    """The API key is valid but lacks the scope (ingest, read, admin) or the team."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(DriftDBError):
    """The server cannot be reached, or refused a write it may accept later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DriftDBError):
    """The call took longer than its timeout."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(DriftDBError):
    """The call was cancelled (for example a closed alert watch)."""

    code = grpc.StatusCode.CANCELLED


class Internal(DriftDBError):
    """The server failed unexpectedly (details are in its log), or any other status."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        ResourceExhausted,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
}

RETRY_AFTER_KEY = "retry-after-ms"


def retry_after(err: grpc.RpcError) -> Optional[float]:
    """The server's ``retry-after-ms`` hint of a failed call, in seconds, if it sent one."""
    try:
        md = err.trailing_metadata()  # type: ignore[attr-defined]
    except Exception:
        return None
    for key, value in md or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(0.0, float(value) / 1000.0)
            except (TypeError, ValueError):
                return None
    return None


def from_rpc_error(err: grpc.RpcError) -> DriftDBError:
    """The typed exception for a failed gRPC call."""
    try:
        code = err.code()  # type: ignore[attr-defined]
        details = err.details() or ""  # type: ignore[attr-defined]
    except Exception:
        code, details = grpc.StatusCode.UNKNOWN, str(err)
    cls = _BY_CODE.get(code, DriftDBError)
    exc = cls(details, code=code, retry_after=retry_after(err))
    return exc

"""``Client``: one lazily created gRPC channel per process, and every driftdb call."""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

import grpc

from . import _fork
from . import _models as models
from . import _wire as w
from ._delivery import Batch, Delivery
from ._errors import DriftDBError, Unavailable, from_rpc_error
from ._models import Schema
from ._monitor import INGEST_INFERENCES, INGEST_LABELS, LabelLogger, Monitor
from ._proto.driftdb.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    alerts_pb2,
    alerts_pb2_grpc,
    ingest_pb2,
    models_pb2,
    models_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from ._results import (
    SEVERITY_BY_NAME,
    Alert,
    ApiKey,
    CreatedKey,
    DriftSummary,
    IngestResult,
    LabelsResult,
    QueryResult,
    ReferenceResult,
    RowError,
    Rule,
)
from ._timeconv import datetime_ms, time_arg

DEFAULT_ADDRESS = "127.0.0.1:50051"
# The server accepts messages up to 64 MiB (``limits.max_message_mb``).
MAX_MESSAGE_BYTES = 64 << 20
UPLOAD_REFERENCE = "/driftdb.v1.Models/UploadReference"

# Codes that no retry can fix: ``Client.ingest`` raises them at once.
_FATAL = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_RETRYABLE_WATCH = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)


def _parse_address(address: str, tls: Optional[bool]) -> "tuple[str, bool]":
    a = address.strip()
    if a.startswith("https://"):
        return a[len("https://") :].rstrip("/"), True if tls is None else tls
    if a.startswith("http://"):
        return a[len("http://") :].rstrip("/"), False if tls is None else tls
    return a, bool(tls)


class Client:
    """A driftdb client.

    ``address`` is ``host:port``, ``http://host:port`` or ``https://host:port`` (TLS); it
    defaults to ``$DRIFTDB_SERVER`` or ``127.0.0.1:50051``. ``api_key`` (default
    ``$DRIFTDB_API_KEY``) is sent as ``authorization: Bearer …`` with every call. ``tls=True``
    (or an ``https://`` address) uses TLS, verified against ``ca`` (a PEM path or bytes;
    default ``$DRIFTDB_CA_CERT``, else the system roots). ``timeout`` bounds unary calls.

    The channel is created on first use, once per process: a process forked after that makes
    its own (the child discards the parent's channel, calls and monitor queues).
    """

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        tls: Optional[bool] = None,
        ca: Union[str, bytes, "os.PathLike[str]", None] = None,
        timeout: float = 60.0,
        options: Optional[List["tuple[str, Any]"]] = None,
    ) -> None:
        address = address or os.environ.get("DRIFTDB_SERVER") or DEFAULT_ADDRESS
        self.target, self.tls = _parse_address(address, tls)
        if ca is None and self.tls:
            ca = os.environ.get("DRIFTDB_CA_CERT") or None
        if ca is not None and not self.tls:
            raise ValueError("ca= needs TLS: pass tls=True or an https:// address")
        self._ca = ca
        key = api_key if api_key is not None else os.environ.get("DRIFTDB_API_KEY")
        key = (key or "").strip()
        self._metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self.timeout = timeout
        self._options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 0),
            # A channel of its own connections: a forked child's new channel must not pick
            # up the parent's connection from the process-wide subchannel pool.
            ("grpc.use_local_subchannel_pool", 1),
            # Reconnect within ~2 s of a server restart (gRPC's default backoff grows to 120 s,
            # and calls fail at once while it waits).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ] + list(options or [])
        self._lock = threading.Lock()
        self._channel: Optional[grpc.Channel] = None
        self._stubs: Dict[str, Any] = {}
        self._shippers: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.models = Models(self)
        self.rules = Rules(self)
        self.alerts = Alerts(self)
        self.keys = Keys(self)
        _fork.track(self)

    def __repr__(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"Client({scheme}://{self.target})"

    # -- channel ---------------------------------------------------------------------------------

    def _after_fork_child(self) -> None:
        _fork.orphan(self._channel)
        self._channel = None
        self._stubs = {}
        self._lock = threading.Lock()

    def _make_channel(self) -> grpc.Channel:
        _fork.grpc_used()
        if not self.tls:
            return grpc.insecure_channel(self.target, options=self._options)
        root = None
        if self._ca is not None:
            if isinstance(self._ca, bytes):
                root = self._ca
            else:
                with open(os.fspath(self._ca), "rb") as f:
                    root = f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.secure_channel(self.target, creds, options=self._options)

    def channel(self) -> grpc.Channel:
        """The process's channel, created on first use."""
        ch = self._channel
        if ch is None:
            with self._lock:
                ch = self._channel
                if ch is None:
                    ch = self._channel = self._make_channel()
        return ch

    def _stub(self, name: str) -> Any:
        s = self._stubs.get(name)
        if s is None:
            ch = self.channel()
            s = {
                "models": models_pb2_grpc.ModelsStub,
                "query": query_pb2_grpc.QueryStub,
                "rules": alerts_pb2_grpc.RulesStub,
                "alerts": alerts_pb2_grpc.AlertsStub,
                "admin": admin_pb2_grpc.AdminStub,
            }[name](ch)
            self._stubs[name] = s
        return s

    def _call(self, stub: str, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        fn = getattr(self._stub(stub), method)
        try:
            return fn(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def close(self, timeout: float = 10.0) -> None:
        """Closes the monitors and label loggers made by this client (delivering what they
        hold, for at most ``timeout`` seconds in all), then the channel."""
        deadline = time.monotonic() + timeout
        shippers = list(self._shippers)
        for s in shippers:
            s._begin_close(deadline)
        for s in shippers:
            s._finish_close(deadline)
        with self._lock:
            ch, self._channel = self._channel, None
            self._stubs = {}
        if ch is not None:
            ch.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- monitors --------------------------------------------------------------------------------

    def monitor(
        self,
        model: str,
        *,
        version: str,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        max_in_flight: int = 4,
    ) -> Monitor:
        """A ``Monitor`` that logs ``model``'s inferences of ``version`` from a service.

        Rows are sent in batches of ``batch_size`` or every ``flush_interval`` seconds,
        whichever comes first; at most ``max_queue`` rows wait (more are dropped and counted)
        and at most ``max_in_flight`` batches are unacknowledged at once."""
        m = Monitor(
            self,
            model,
            version=version,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            max_in_flight=max_in_flight,
        )
        self._shippers.add(m)
        return m

    def labels(
        self,
        model: str,
        *,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        max_in_flight: int = 4,
    ) -> LabelLogger:
        """A ``LabelLogger`` for ``model``'s labels and outcomes (same batching as
        ``monitor``)."""
        lg = LabelLogger(
            self,
            model,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            max_in_flight=max_in_flight,
        )
        self._shippers.add(lg)
        return lg

    # -- models ----------------------------------------------------------------------------------

    def _model_spec(self, model: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        r = self._call("models", "GetModel", models_pb2.GetModelRequest(id=model), timeout)
        return models.from_pb(r.model)

    # -- batch ingest ----------------------------------------------------------------------------

    def _deliver(
        self,
        path: str,
        response_type: Any,
        encode: Callable[[int, int, str, int], bytes],
        n: int,
        *,
        batch_size: int,
        producer: str,
        max_in_flight: int,
        on_ack: Callable[[Batch, Any], None],
        retry_timeout: float,
    ) -> Delivery:
        """Streams rows ``[0, n)`` in batches on one call, replaying unacknowledged batches
        after a failure; raises the typed error of a failure no retry can fix, or
        ``Unavailable`` when no batch was acknowledged for ``retry_timeout`` seconds."""
        if not 1 <= batch_size <= 100_000:
            raise ValueError("batch_size must be in 1..=100000 (the server's limit)")
        lock = threading.Condition()
        ev = threading.Event()
        progress = [time.monotonic()]

        def acked(b: Batch, ack: Any) -> None:
            progress[0] = time.monotonic()
            on_ack(b, ack)

        d = Delivery(
            self._make_channel,
            path,
            response_type,
            self._metadata,
            max_in_flight=max_in_flight,
            lock=lock,
            on_ack=acked,
            on_reject=lambda b, e: None,
            wake=ev.set,
            reject_codes=frozenset(),
            fatal_codes=_FATAL,
            max_backoff=2.0,
        )
        seq = 0
        a = 0
        try:
            while True:
                ev.clear()
                wait = d.service()
                if d.fatal is not None:
                    raise from_rpc_error(d.fatal)  # type: ignore[arg-type]
                if a < n and d.has_room():
                    b = min(n, a + batch_size)
                    seq += 1
                    d.submit(seq, encode(a, b, producer, seq), b - a)
                    a = b
                    continue
                if a >= n and d.idle():
                    return d
                if time.monotonic() - progress[0] > retry_timeout:
                    raise Unavailable(
                        f"no batch acknowledged for {retry_timeout:.0f}s: {d.last_error}",
                        code=grpc.StatusCode.UNAVAILABLE,
                    )
                ev.wait(min(wait, 0.5))
        finally:
            d.close(cancel=not d.idle())

    def _schema(self, model: str) -> Schema:
        return Schema(self._model_spec(model))

    def ingest(
        self,
        data: Any,
        *,
        model: str,
        version: Optional[str] = None,
        columns: Optional[Mapping[str, str]] = None,
        attributions: Optional[Mapping[str, str]] = None,
        batch_size: int = 20_000,
        producer: Optional[str] = None,
        ts_unit: str = "ms",
        max_in_flight: int = 4,
        retry_timeout: float = 60.0,
    ) -> IngestResult:
        """Ingests a table of inferences: a pandas DataFrame, a pyarrow Table or RecordBatch,
        or a mapping of column name to numpy array (or list).

        Columns are matched by name: ``request_id``, ``ts`` (datetimes, RFC 3339 text, or
        numbers in ``ts_unit`` since the epoch; absent = now), ``model_version`` (unless
        ``version`` is given), ``score`` (or ``prediction``), ``latency_ms``, ``cost`` (the
        cost of serving the event, a number >= 0; DriftQL ``cost_per_1k``; only when the model
        has no feature named ``cost``), one column per feature and segment key of the model,
        and ``attr.<feature>`` columns: that feature's attributions (e.g. SHAP values; DriftQL
        ``importance``, ``importance_drift``). ``columns`` maps those names to other column
        names (``{"score": "proba", "amount": "txn_amount", "cost": "usd"}``), and
        ``attributions`` maps model features to the columns holding their attributions
        (``{"amount": "shap_amount"}``; it takes precedence over ``attr.<feature>`` columns; a
        name that is not a feature of the model raises ``ValueError`` before anything is
        sent). NaN, None and pandas NA are missing (a row without a cost or an attribution
        reports none; an attribution column is left out of a batch none of whose rows carry
        one); booleans and pandas categoricals are categories. The server refuses a row whose
        cost is negative or not finite, or whose attribution is not finite.

        Batches carry ``producer`` (default: a new uuid) and sequences 1, 2, …: running the
        same ingest again with the same ``producer`` is answered as a replay and counts
        nothing twice. Per-row refusals are in the result; a refused call raises.
        """
        from ._frames import Frame, FrameEncoder

        t0 = time.perf_counter()
        schema = self._schema(model)
        frame = Frame(data)
        enc = FrameEncoder(
            schema,
            frame,
            version=version,
            columns=columns,
            attributions=attributions,
            ts_unit=ts_unit,
        )
        res = IngestResult(rows=frame.n, producer_id=producer or f"py-ingest-{uuid.uuid4().hex}")

        def on_ack(b: Batch, ack: Any) -> None:
            res.batches += 1
            if ack.replayed:
                res.replayed_batches += 1
                return
            res.accepted += ack.accepted
            res.rejected += ack.rejected
            res.duplicates += ack.duplicates
            res.invalid_values += ack.invalid_values
            res.sampled_out += ack.sampled_out
            res.errors.extend(RowError(e.row, e.request_id, e.reason) for e in ack.errors)

        if frame.n:
            d = self._deliver(
                INGEST_INFERENCES,
                ingest_pb2.BatchAck,
                enc.encode,
                frame.n,
                batch_size=batch_size,
                producer=res.producer_id,
                max_in_flight=max_in_flight,
                on_ack=on_ack,
                retry_timeout=retry_timeout,
            )
            res.retried_batches = d.retried_batches
        res.seconds = time.perf_counter() - t0
        return res

    def labels_frame(
        self,
        data: Any,
        *,
        model: str,
        columns: Optional[Mapping[str, str]] = None,
        batch_size: int = 5000,
        producer: Optional[str] = None,
        ts_unit: str = "ms",
        max_in_flight: int = 4,
        retry_timeout: float = 60.0,
    ) -> LabelsResult:
        """Ingests a table of labels: ``request_id``, ``label``, ``ts`` (arrival time; absent =
        the server's clock) and, for ranking models, ``click``, ``purchase``, ``revenue``,
        ``dwell_ms`` and ``relevance`` (a mapping per row). ``columns`` renames as in
        ``ingest``. Labels of predictions the model's sampling drops are not sent."""
        from ._frames import Frame, LabelFrameEncoder
        from ._sampling import sampled_in

        t0 = time.perf_counter()
        frame = Frame(data)
        enc = LabelFrameEncoder(model, frame, columns=columns, ts_unit=ts_unit)
        schema = self._schema(model)
        res = LabelsResult(labels=frame.n, producer_id=producer or f"py-labels-{uuid.uuid4().hex}")
        if schema.sampling < 1.0:
            keep = [i for i, r in enumerate(enc.request_ids) if sampled_in(r, schema.sampling)]
            if len(keep) != frame.n:
                enc = _subset_labels(enc, keep)

        def on_ack(b: Batch, ack: Any) -> None:
            res.batches += 1
            if ack.replayed:
                res.replayed_batches += 1
                return
            res.joined += ack.joined
            res.pending += ack.pending
            res.sampled_out += getattr(ack, "sampled_out", 0)
            res.rejected += ack.rejected
            res.duplicates += ack.duplicates
            res.errors.extend(RowError(e.row, e.request_id, e.reason) for e in ack.errors)

        if enc.n:
            d = self._deliver(
                INGEST_LABELS,
                ingest_pb2.LabelAck,
                enc.encode,
                enc.n,
                batch_size=batch_size,
                producer=res.producer_id,
                max_in_flight=max_in_flight,
                on_ack=on_ack,
                retry_timeout=retry_timeout,
            )
            res.retried_batches = d.retried_batches
        res.seconds = time.perf_counter() - t0
        return res

    def upload_reference(
        self,
        model: str,
        version: str,
        data: Any,
        *,
        columns: Optional[Mapping[str, str]] = None,
        attributions: Optional[Mapping[str, str]] = None,
        replace: bool = False,
        batch_size: int = 20_000,
        ts_unit: str = "ms",
        timeout: Optional[float] = None,
    ) -> ReferenceResult:
        """Uploads a reference (training) profile for ``model`` ``version`` from a table with
        the same columns as ``ingest`` plus ``label`` (attributions and costs too: the
        reference's importance is ``importance``'s baseline). Bin edges are fixed by the server
        when the upload ends; ``replace=True`` replaces an existing profile."""
        from ._frames import Frame, FrameEncoder

        schema = self._schema(model)
        frame = Frame(data)
        enc = FrameEncoder(
            schema,
            frame,
            version=version,
            columns=columns,
            attributions=attributions,
            ts_unit=ts_unit,
            with_labels=True,
            request_ids_required=False,
        )
        header = models_pb2.ReferenceHeader(model_id=model, model_version=version, replace=replace)

        def chunks() -> Iterator[bytes]:
            yield w.field(w.T_CHUNK_HEADER, header.SerializeToString())
            for a in range(0, frame.n, batch_size):
                b = min(frame.n, a + batch_size)
                yield w.field(w.T_CHUNK_ROWS, enc.encode(a, b, "", 0))

        method = self.channel().stream_unary(
            UPLOAD_REFERENCE,
            request_serializer=None,
            response_deserializer=models_pb2.ReferenceSummary.FromString,
        )
        try:
            s = method(
                chunks(), timeout=timeout or max(self.timeout, 600.0), metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return ReferenceResult(
            model=s.model_id,
            version=s.model_version,
            rows=s.rows,
            rejected=s.rejected,
            features=list(s.features),
            errors=[RowError(e.row, e.request_id, e.reason) for e in s.errors],
        )

    # -- queries ---------------------------------------------------------------------------------

    def query(self, text: str, *, timeout: Optional[float] = None) -> QueryResult:
        """Runs a DriftQL query (``query/DRIFTQL.md``), e.g.
        ``db.query("psi(fraud.*) over 1h step 15m")``."""
        r = self._call("query", "Query", query_pb2.QueryRequest(query=text), timeout)
        return QueryResult.from_pb(r.table, r.warnings)

    def drift_summary(
        self,
        model: str,
        *,
        version: Optional[str] = None,
        start: Any = None,
        end: Any = None,
        timeout: Optional[float] = None,
    ) -> DriftSummary:
        """Drifted features, prediction shift and labelled performance of ``model`` over windows
        starting in ``[start, end)`` (RFC 3339 text, ``now-1h``, a datetime, or a timedelta
        meaning that long ago; default the last hour)."""
        req = query_pb2.DriftSummaryRequest(
            model_id=model,
            model_version=version or "",
            to=time_arg(end),
        )
        setattr(req, "from", time_arg(start))
        r = self._call("query", "DriftSummary", req, timeout)
        return DriftSummary(
            model=model,
            version=r.model_version,
            start=getattr(r, "from"),
            end=r.to,
            drifted_features=QueryResult.from_pb(r.drifted_features),
            prediction_shift=QueryResult.from_pb(r.prediction_shift),
            performance=QueryResult.from_pb(r.performance),
            warnings=list(r.warnings),
        )

    # -- alerts ----------------------------------------------------------------------------------

    def watch_alerts(
        self,
        after: int = 0,
        *,
        model: Optional[str] = None,
        min_severity: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> "AlertWatch":
        """An iterator over alert records with a sequence above ``after``, live. It reconnects
        by itself after a server restart, resuming after the last sequence it yielded; it ends
        after ``timeout`` seconds (default: never) or ``close()``."""
        return AlertWatch(self, after, model, min_severity, timeout)

    def announce_event(
        self, model: str, event: str, *, version: Optional[str] = None
    ) -> List[Alert]:
        """Announces an event (``release``, ``catalog_refresh``, …); returns the alerts the
        matching event rules recorded."""
        r = self._call(
            "rules",
            "AnnounceEvent",
            alerts_pb2.AnnounceEventRequest(model=model, event=event, version=version or ""),
        )
        return [Alert.from_pb(a) for a in r.alerts]


def _subset_labels(enc: Any, keep: List[int]) -> Any:
    enc.request_ids = [enc.request_ids[i] for i in keep]
    for attr in ("ts", "labels", "relevance"):
        vals = getattr(enc, attr)
        if vals is not None:
            setattr(enc, attr, [vals[i] for i in keep])
    enc.outcomes = {k: [v[i] for i in keep] for k, v in enc.outcomes.items()}
    enc.n = len(keep)
    return enc


class Models:
    """``db.models``: create, list and show model definitions (the JSON form of SPEC §5)."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def create(self, spec: models.ModelSpec) -> Dict[str, Any]:
        """Registers a model from a mapping, JSON text or a JSON file path; returns it as
        stored (defaults filled in)."""
        m = models.to_pb(models.load_spec(spec))
        r = self._c._call("models", "CreateModel", models_pb2.CreateModelRequest(model=m))
        return models.from_pb(r.model)

    def list(self) -> List[Dict[str, Any]]:
        r = self._c._call("models", "ListModels", models_pb2.ListModelsRequest())
        return [models.from_pb(m) for m in r.models]

    def show(self, model_id: str) -> Dict[str, Any]:
        return self._c._model_spec(model_id)

    get = show


class Rules:
    """``db.rules``: add, list and remove alert rules (JSON definitions, README "Rules and
    alerts")."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def add(self, definition: Union[Mapping[str, Any], str, "os.PathLike[str]"]) -> Rule:
        """Creates a rule, or replaces the rule with the same id (its version goes up)."""
        import json

        if isinstance(definition, Mapping):
            text = json.dumps(dict(definition))
        else:
            text = os.fspath(definition)
            if not text.lstrip().startswith("{"):
                with open(text, encoding="utf-8") as f:
                    text = f.read()
        r = self._c._call("rules", "CreateRule", alerts_pb2.CreateRuleRequest(definition_json=text))
        return Rule.from_pb(r.rule)

    def list(self, model: Optional[str] = None) -> List[Rule]:
        r = self._c._call("rules", "ListRules", alerts_pb2.ListRulesRequest(model=model or ""))
        return [Rule.from_pb(x) for x in r.rules]

    def rm(self, rule_id: str) -> None:
        self._c._call("rules", "DeleteRule", alerts_pb2.DeleteRuleRequest(id=rule_id))

    remove = rm


class Alerts:
    """``db.alerts``: alert history and the live stream."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def list(
        self,
        model: Optional[str] = None,
        *,
        start: Any = None,
        end: Any = None,
        limit: int = 100,
    ) -> List[Alert]:
        def ms(v: Any) -> int:
            if v is None:
                return 0
            if isinstance(v, int):
                return v
            from ._timeconv import parse_rfc3339

            return datetime_ms(parse_rfc3339(v) if isinstance(v, str) else v)

        r = self._c._call(
            "alerts",
            "ListAlerts",
            alerts_pb2.ListAlertsRequest(
                model=model or "", from_ms=ms(start), to_ms=ms(end), limit=limit
            ),
        )
        return [Alert.from_pb(a) for a in r.alerts]

    def watch(self, after: int = 0, **kw: Any) -> "AlertWatch":
        return self._c.watch_alerts(after, **kw)


class Keys:
    """``db.keys``: API keys (admin scope)."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self,
        name: str,
        *,
        scopes: "List[str] | tuple[str, ...]" = ("ingest", "read"),
        team: Optional[str] = None,
        operator: bool = False,
    ) -> CreatedKey:
        r = self._c._call(
            "admin",
            "CreateKey",
            admin_pb2.CreateKeyRequest(
                name=name, team=team or "", scopes=list(scopes), operator=operator
            ),
        )
        return CreatedKey(key=ApiKey.from_pb(r.key), token=r.token)

    def list(self) -> List[ApiKey]:
        r = self._c._call("admin", "ListKeys", admin_pb2.ListKeysRequest())
        return [ApiKey.from_pb(k) for k in r.keys]

    def revoke(self, key_id: str) -> ApiKey:
        r = self._c._call("admin", "RevokeKey", admin_pb2.RevokeKeyRequest(id=key_id))
        return ApiKey.from_pb(r.key)


class AlertWatch:
    """Iterator of ``Alert`` records from ``WatchAlerts``, resuming by sequence after a
    reconnect. ``last_sequence`` is the sequence of the last alert yielded."""

    def __init__(
        self,
        client: Client,
        after: int,
        model: Optional[str],
        min_severity: Optional[str],
        timeout: Optional[float],
    ) -> None:
        if min_severity and min_severity not in SEVERITY_BY_NAME:
            raise ValueError(f"min_severity must be one of {sorted(SEVERITY_BY_NAME)}")
        self._c = client
        self.last_sequence = int(after)
        self._model = model or ""
        self._sev = SEVERITY_BY_NAME.get(min_severity or "", 0)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._call: Any = None
        self._closed = False
        self._backoff = 0.1

    def __iter__(self) -> "AlertWatch":
        return self

    def _remaining(self) -> Optional[float]:
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def __next__(self) -> Alert:
        while True:
            if self._closed:
                raise StopIteration
            rem = self._remaining()
            if rem is not None and rem <= 0:
                self.close()
                raise StopIteration
            if self._call is None:
                req = alerts_pb2.WatchAlertsRequest(
                    after_sequence=self.last_sequence, model=self._model, min_severity=self._sev
                )
                self._call = self._c._stub("alerts").WatchAlerts(
                    req, timeout=rem, metadata=self._c._metadata
                )
            try:
                a = next(self._call)
            except StopIteration:
                err: Optional[grpc.RpcError] = None
            except grpc.RpcError as e:
                err = e
            else:
                self._backoff = 0.1
                self.last_sequence = a.sequence
                return Alert.from_pb(a)
            self._call = None
            if self._closed:
                raise StopIteration
            if err is not None:
                code = err.code()  # type: ignore[attr-defined]
                if code == grpc.StatusCode.CANCELLED and self._closed:
                    raise StopIteration
                if code not in _RETRYABLE_WATCH:
                    raise from_rpc_error(err) from None
            delay = self._backoff
            rem = self._remaining()
            if rem is not None:
                delay = min(delay, max(0.0, rem))
            time.sleep(delay)
            self._backoff = min(self._backoff * 2, 5.0)

    def close(self) -> None:
        self._closed = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __enter__(self) -> "AlertWatch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Client", "DriftDBError"]

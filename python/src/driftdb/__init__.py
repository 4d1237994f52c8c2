"""Python client for driftdb, the time-series database for ML model monitoring.

>>> import driftdb
>>> db = driftdb.Client("127.0.0.1:50051", api_key="ddb_...")
>>> mon = db.monitor("fraud", version="v2")
>>> mon.log(request_id="r1", features={"amount": 12.5}, segments={"channel": "web"}, score=0.3)

See README.md in the package's source for the whole API and its guarantees.
"""

from ._client import Alerts, AlertWatch, Client, Keys, Models, Rules
from ._errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    DriftDBError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from ._monitor import LabelLogger, Monitor, Stats
from ._results import (
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
from ._sampling import sampled_in

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertWatch",
    "Alerts",
    "AlreadyExists",
    "ApiKey",
    "Cancelled",
    "Client",
    "CreatedKey",
    "DeadlineExceeded",
    "DriftDBError",
    "DriftSummary",
    "FailedPrecondition",
    "IngestResult",
    "Internal",
    "InvalidArgument",
    "Keys",
    "LabelLogger",
    "LabelsResult",
    "Models",
    "Monitor",
    "NotFound",
    "PermissionDenied",
    "QueryResult",
    "ReferenceResult",
    "ResourceExhausted",
    "RowError",
    "Rule",
    "Rules",
    "Stats",
    "Unauthenticated",
    "Unavailable",
    "sampled_in",
]

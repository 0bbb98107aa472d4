"""Python client of the SAFT job service (sync and asyncio), its CLI helpers and the
watch folder. Depends on httpx only (no torch, no numpy): installable on any workstation.
"""

from __future__ import annotations

from saft_client._core import __version__
from saft_client.aio import AsyncSaftClient
from saft_client.client import SaftClient
from saft_client.errors import (
    AuthenticationError,
    ConflictError,
    FieldError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RangeNotSatisfiableError,
    SaftAPIError,
    SaftClientError,
    SaftConnectionError,
    SaftProtocolError,
    SaftTimeoutError,
    ServerError,
    ValidationError,
)
from saft_client.models import (
    FINAL_STATES,
    Dataset,
    Iteration,
    Job,
    JobEvent,
    Model,
    Reconstruction,
)

__all__ = [
    "FINAL_STATES",
    "AsyncSaftClient",
    "AuthenticationError",
    "ConflictError",
    "Dataset",
    "FieldError",
    "Iteration",
    "Job",
    "JobEvent",
    "Model",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RangeNotSatisfiableError",
    "Reconstruction",
    "SaftAPIError",
    "SaftClient",
    "SaftClientError",
    "SaftConnectionError",
    "SaftProtocolError",
    "SaftTimeoutError",
    "ServerError",
    "ValidationError",
    "__version__",
]

"""Request errors of the serving API, each carrying TF Serving's canonical error code (the gRPC status) and the
HTTP status its REST API maps that code to."""
from __future__ import annotations

from typing import Mapping, Optional


class ServingError(Exception):
    """A request failed; the message goes to a REST client as `{"error": message}`, with `headers` added, and to a
    gRPC client as the status details with the status code named `code` (a `grpc.StatusCode` name)."""

    http_status = 500
    code = "INTERNAL"

    def __init__(self, message: str, headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: Mapping[str, str] = dict(headers or {})


class InvalidArgument(ServingError):
    """The client sent something the model cannot take (TF Serving maps INVALID_ARGUMENT to 400)."""

    http_status = 400
    code = "INVALID_ARGUMENT"


class NotFound(ServingError):
    """Unknown model or version (NOT_FOUND -> 404)."""

    http_status = 404
    code = "NOT_FOUND"


class PayloadTooLarge(ServingError):
    """The request body exceeds the configured limit; the body is not parsed."""

    http_status = 413
    code = "RESOURCE_EXHAUSTED"


class LengthRequired(ServingError):
    """A POST without Content-Length: the server does not read bodies of unknown size."""

    http_status = 411
    code = "INVALID_ARGUMENT"


class TooManyRequests(ServingError):
    """All in-flight slots are taken (TF Serving maps RESOURCE_EXHAUSTED to 429); send with Retry-After."""

    http_status = 429
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(ServingError):
    """The request was not answered within its deadline (DEADLINE_EXCEEDED -> 504)."""

    http_status = 504
    code = "DEADLINE_EXCEEDED"


class Internal(ServingError):
    """The model failed for a reason that is not the client's fault."""

    http_status = 500
    code = "INTERNAL"


class Unimplemented(ServingError):
    """A TF Serving verb this server does not offer (UNIMPLEMENTED -> 501)."""

    http_status = 501
    code = "UNIMPLEMENTED"

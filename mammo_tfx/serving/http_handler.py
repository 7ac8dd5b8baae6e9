"""HTTP transport for RestApi: admission (requests in flight, deadline), body reading with limits, JSON responses,
TF Serving's error envelope."""
from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Dict, Mapping, Type

from mammo_tfx.serving.admission import InFlightLimiter
from mammo_tfx.serving.errors import InvalidArgument, LengthRequired, PayloadTooLarge, ServingError, TooManyRequests
from mammo_tfx.serving.rest_api import RestApi

logger = logging.getLogger(__name__)

_DRAIN_CHUNK_BYTES = 1 << 16
# An oversized body is read and discarded (so the client sees the 413 rather than a connection reset) only up
# to this many bytes past the limit; beyond that the connection is simply closed after the response.
_MAX_DRAIN_BYTES = 256 * 1024 * 1024


def make_handler_class(api: RestApi, limiter: InFlightLimiter) -> Type[BaseHTTPRequestHandler]:
    """A request handler class bound to `api`, for http.server's (Threading)HTTPServer. POST requests (the ones
    that run the model) go through `limiter`; GET requests (status, metadata) always answer, so probes work under
    load."""

    class RestRequestHandler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections open between requests; every response carries Content-Length.
        protocol_version = "HTTP/1.1"
        server_version = "mammo-tfx-serving"
        # Idle keep-alive connections give their thread back after this many seconds.
        timeout = 60
        # A buffered writer sends status line, headers and body in one segment (flushed by http.server after each
        # request), and TCP_NODELAY sends it at once: a response split into two small writes on a Nagle socket
        # waits for the client's delayed ACK, ~40 ms per request (docs/benchmarks.md, Serving).
        wbufsize = -1
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(lambda: api.get(self.path))

        def do_POST(self) -> None:  # noqa: N802
            self._answer(self._admitted_post)

        def _admitted_post(self) -> Dict[str, Any]:
            try:
                limiter.enter()
            except TooManyRequests:
                # Refused before reading: drain the body so the client reads the 429 instead of a reset.
                self._discard_unread_body()
                raise
            try:
                body = self._read_body()
            except BaseException:
                limiter.leave()
                raise
            return limiter.run(lambda: api.post(self.path, body))

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                raise LengthRequired("chunked request bodies are not accepted; send Content-Length")
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                raise LengthRequired("POST requests need a Content-Length header")
            try:
                length = int(length_header)
            except ValueError as error:
                self.close_connection = True
                raise InvalidArgument(f"invalid Content-Length {length_header!r}") from error
            limit = api.limits.max_body_bytes
            if length > limit:
                self._discard_body(length)
                raise PayloadTooLarge(f"request body of {length} bytes exceeds serving.max_body_bytes={limit}")
            return self.rfile.read(length)

        def _discard_unread_body(self) -> None:
            try:
                self._discard_body(int(self.headers.get("Content-Length", "")))
            except ValueError:
                self.close_connection = True

        def _discard_body(self, length: int) -> None:
            self.close_connection = True
            if length > api.limits.max_body_bytes + _MAX_DRAIN_BYTES:
                return
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(_DRAIN_CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)

        def _answer(self, action: Callable[[], Dict[str, Any]]) -> None:
            headers: Mapping[str, str] = {}
            try:
                status, document = 200, action()
            except ServingError as error:
                status, document, headers = error.http_status, {"error": error.message}, error.headers
                logger.info("%s %s -> %d: %s", self.command, self.path, status, error.message)
            except Exception as error:  # noqa: BLE001 - one bad request must not take the server down
                logger.exception("%s %s failed", self.command, self.path)
                status, document = 500, {"error": f"{type(error).__name__}: {error}"}
            self._send_json(status, document, headers)

        def _send_json(self, status: int, document: Dict[str, Any], headers: Mapping[str, str]) -> None:
            # NaN and Infinity tokens are allowed, as in TF Serving's responses.
            body = json.dumps(document).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                logger.info("client went away before the response to %s %s", self.command, self.path)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            logger.debug("%s - %s", self.address_string(), format % args)

    return RestRequestHandler

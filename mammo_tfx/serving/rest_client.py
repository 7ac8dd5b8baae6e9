"""A minimal client for TF Serving's REST API (works against this server and `tensorflow_model_server`)."""
from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import Any, Dict, Optional, Sequence, Tuple

Response = Tuple[int, Dict[str, Any]]


def model_path(model_name: str, version: Optional[int] = None) -> str:
    """`/v1/models/NAME[/versions/N]`."""
    path = f"/v1/models/{urllib.parse.quote(model_name, safe='')}"
    return path if version is None else f"{path}/versions/{version}"


def images_request(images: Sequence[bytes], signature_name: Optional[str] = None) -> Dict[str, Any]:
    """A row-format predict body with each encoded image as a b64 instance."""
    document: Dict[str, Any] = {"instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images]}
    if signature_name:
        document["signature_name"] = signature_name
    return document


class RestClient:
    """One keep-alive HTTP connection to a model server; not thread-safe (use one per thread)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)

    def request(self, method: str, path: str, body: Optional[bytes] = None) -> Response:
        """Send one request; returns the HTTP status and the decoded JSON body."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self._connection.request(method, path, body=body, headers=headers)
            response = self._connection.getresponse()
            payload = response.read()
        except (ConnectionError, http.client.HTTPException):
            # The server closes the connection after some errors (e.g. an oversized body); retry once on a
            # fresh connection so one refused request does not poison the client.
            self._connection.close()
            self._connection.request(method, path, body=body, headers=headers)
            response = self._connection.getresponse()
            payload = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self._connection.close()
        return response.status, json.loads(payload)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post_json(self, path: str, document: Any) -> Response:
        return self.request("POST", path, json.dumps(document).encode("utf-8"))

    def predict(self, model_name: str, document: Any, version: Optional[int] = None) -> Response:
        return self.post_json(model_path(model_name, version) + ":predict", document)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""The TF Serving REST routes for one model, independent of the HTTP transport.

GET  /v1/models/NAME[/versions/N]            -> model status
GET  /v1/models/NAME[/versions/N]/metadata   -> signature defs
POST /v1/models/NAME[/versions/N]:predict    -> predictions
Each handler returns the JSON document of a 200 response or raises a ServingError with the status to send.
"""
from __future__ import annotations

import re
import urllib.parse
from typing import Any, Dict, Optional

from mammo_tfx.names import DEFAULT_SIGNATURE
from mammo_tfx.serving.errors import InvalidArgument, Unimplemented
from mammo_tfx.serving.json_tensors import decode_inputs, encode_outputs, parse_predict_body
from mammo_tfx.serving.limits import RequestLimits
from mammo_tfx.serving.servables import Servables
from mammo_tfx.serving.signatures import signature_def_map_json

# TF Serving matches paths case-insensitively; the model name may be URL-encoded.
_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(predict|classify|regress)", re.IGNORECASE)
_STATUS_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?", re.IGNORECASE)

Document = Dict[str, Any]


class RestApi:
    """Answers REST requests for the model that `servables` serves."""

    def __init__(self, servables: Servables) -> None:
        self.servables = servables

    @property
    def limits(self) -> RequestLimits:
        return self.servables.limits

    def get(self, path: str) -> Document:
        match = _STATUS_PATH.fullmatch(urllib.parse.urlsplit(path).path)
        if match is None:
            raise InvalidArgument(f"Malformed request: GET {path}")
        name, version = self._name_and_version(match)
        if match.group(3):
            return self._metadata(name, version)
        return self._status(name, version)

    def post(self, path: str, body: bytes) -> Document:
        match = _PREDICT_PATH.fullmatch(urllib.parse.urlsplit(path).path)
        if match is None:
            raise InvalidArgument(f"Malformed request: POST {path}")
        name, version = self._name_and_version(match)
        verb = match.group(3).lower()
        if verb != "predict":
            raise Unimplemented(f"'{verb}' is not served here; use ':predict'")
        return self._predict(name, version, body)

    @staticmethod
    def _name_and_version(match: "re.Match[str]") -> tuple[str, Optional[int]]:
        version = match.group(2)
        return urllib.parse.unquote(match.group(1)), (int(version) if version is not None else None)

    def _status(self, name: str, version: Optional[int]) -> Document:
        return {"model_version_status": [
            {"version": str(state.version), "state": state.state,
             "status": {"error_code": state.error_code, "error_message": state.error_message}}
            for state in self.servables.version_states(name, version)]}

    def _metadata(self, name: str, version: Optional[int]) -> Document:
        model = self.servables.model(name, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": signature_def_map_json(model.signature_defs)}}

    def _predict(self, name: str, version: Optional[int], body: bytes) -> Document:
        request = parse_predict_body(body)
        model = self.servables.model(name, version)
        signature_name = request.signature_name or DEFAULT_SIGNATURE
        inputs = decode_inputs(request, signature_name, model.input_dtypes(signature_name))
        outputs = self.servables.predict(model, signature_name, inputs)
        return encode_outputs(outputs, request.row_format)

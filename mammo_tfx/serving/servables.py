"""What the REST and gRPC APIs share: the served model looked up by name and version, its status rows, and the
predict call with the image limits checked before TensorFlow runs. Transports decode requests into arrays, call
these, and map the ServingErrors raised here to their own statuses (errors.py)."""
from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional

import numpy as np

from mammo_tfx.serving.errors import NotFound
from mammo_tfx.serving.limits import RequestLimits, check_image_inputs
from mammo_tfx.serving.model import LoadedModel
from mammo_tfx.serving.repository import ModelRepository, VersionState
from mammo_tfx.serving.request_log import RequestLogger

logger = logging.getLogger(__name__)


class Servables:
    """The versions of the model `model_name` that `repository` manages, served within `limits`; answered predict
    requests are sampled into `request_logger`'s logs when one is given."""

    def __init__(self, model_name: str, repository: ModelRepository, limits: RequestLimits,
                 request_logger: Optional[RequestLogger] = None) -> None:
        self.model_name = model_name
        self.repository = repository
        self.limits = limits
        self.request_logger = request_logger

    def model(self, name: str, version: Optional[int]) -> LoadedModel:
        """The model serving `name` (at `version`, if given); NotFound otherwise. Take it once per request, so a
        newer version swapped in meanwhile does not serve half of one."""
        if name != self.model_name:
            wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {wanted}")
        return self.repository.get(name, version)

    def version_states(self, name: str, version: Optional[int]) -> List[VersionState]:
        """The status rows of `name` (only `version`'s, if given), newest first; NotFound when there are none."""
        states = self.repository.version_states() if name == self.model_name else []
        if version is not None:
            states = [state for state in states if state.version == version]
        if not states:
            if version is None:
                raise NotFound(f"Could not find any versions of model {name}")
            raise NotFound(f"Could not find version {version} of model {name}")
        return states

    def predict(self, model: LoadedModel, signature_name: str,
                inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run `signature_name` of `model` on decoded inputs after checking their images against the limits."""
        check_image_inputs(inputs, self.limits.image)
        outputs = model.predict(signature_name, inputs)
        if self.request_logger is not None:
            try:
                self.request_logger.log(self.model_name, model.version, signature_name, inputs, outputs)
            except Exception:  # noqa: BLE001 - a full disk must not turn answered requests into errors
                logger.exception("request not logged")
        return outputs

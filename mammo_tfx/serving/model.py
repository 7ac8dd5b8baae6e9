"""One loaded model version: its signatures and a thread-safe predict call that reports errors by kind."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from mammo_tfx.names import DEFAULT_SIGNATURE, SERVING_TAG
from mammo_tfx.serving.errors import Internal, InvalidArgument
from mammo_tfx.serving.signatures import check_input_keys, input_dtypes, read_signature_defs


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A SavedModel version in memory. Immutable, so request threads can share it while a newer one loads."""

    version: int
    path: str
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    # The loaded object owns the variables the signature functions capture; keep it alive with them.
    saved_model: Any
    functions: Mapping[str, Any]

    def input_dtypes(self, signature_name: str) -> Dict[str, tf.dtypes.DType]:
        """Input key -> dtype of a signature; unknown names are the client's error, as in TF Serving."""
        return input_dtypes(self._signature_def(signature_name))

    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one signature on a batch. Raises InvalidArgument for inputs the signature rejects."""
        name = signature_name or DEFAULT_SIGNATURE
        expected = self.input_dtypes(name)
        check_input_keys(name, expected, inputs)
        try:
            tensors = {key: tf.convert_to_tensor(value, dtype=expected[key]) for key, value in inputs.items()}
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"input cannot be converted to the signature's dtype: {error}") from error
        function = self.functions.get(name)
        if function is None:
            # Listed in saved_model.pb but not restorable as a function (e.g. the init op): not callable.
            raise InvalidArgument(f"Serving signature name: \"{name}\" cannot be called")
        try:
            outputs = function(**tensors)
        except (TypeError, ValueError) as error:
            # Raised before execution when shapes or ranks do not fit the signature's TensorSpecs.
            raise InvalidArgument(f"input does not match signature '{name}': {error}") from error
        except tf.errors.InvalidArgumentError as error:
            # Raised during execution, e.g. an image that does not decode.
            raise InvalidArgument(op_error_summary(error)) from error
        except tf.errors.OpError as error:
            raise Internal(op_error_summary(error)) from error
        return {key: value.numpy() for key, value in outputs.items()}

    def _signature_def(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        name = signature_name or DEFAULT_SIGNATURE
        signature_def = self.signature_defs.get(name)
        if signature_def is None:
            raise InvalidArgument(f"Serving signature name: \"{name}\" not found in signature def")
        return signature_def


_OP_ERROR_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[{{node")


def op_error_summary(error: tf.errors.OpError) -> str:
    """The op's own message without graph-location lines, which mean nothing to a client."""
    lines = [line.strip() for line in error.message.splitlines()]
    kept = [line for line in lines if line and not any(noise in line for noise in _OP_ERROR_NOISE)]
    return " ".join(kept) or error.message.strip() or type(error).__name__


def load_model(path: str, version: int) -> LoadedModel:
    """Load the SavedModel at `path` (a version directory) with its signature defs."""
    signature_defs = read_signature_defs(path)
    saved_model = tf.saved_model.load(path, tags=[SERVING_TAG])
    functions = dict(saved_model.signatures)
    return LoadedModel(version=version, path=path, signature_defs=signature_defs,
                       saved_model=saved_model, functions=functions)

"""Signature definitions read from `saved_model.pb`, the source TF Serving itself uses for metadata and inputs."""
from __future__ import annotations

import os
from typing import Any, Collection, Dict, Mapping

import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from mammo_tfx.names import DEFAULT_SIGNATURE, SERVING_TAG
from mammo_tfx.serving.errors import InvalidArgument


def read_signature_defs(saved_model_dir: str) -> Mapping[str, meta_graph_pb2.SignatureDef]:
    """The signature defs of the `serve` meta graph of the SavedModel in `saved_model_dir`."""
    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    for meta_graph in saved_model.meta_graphs:
        if SERVING_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path} has no meta graph tagged {SERVING_TAG!r}")


def input_dtypes(signature_def: meta_graph_pb2.SignatureDef) -> Dict[str, tf.dtypes.DType]:
    """Input key -> dtype, the information needed to turn JSON values into tensors."""
    return {key: tf.dtypes.as_dtype(info.dtype) for key, info in signature_def.inputs.items()}


def check_input_keys(signature_name: str, expected: Collection[str], given: Collection[str]) -> None:
    """Raise InvalidArgument unless a request names exactly the signature's inputs."""
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or extra:
        raise InvalidArgument(
            f"Request inputs do not match the inputs of signature '{signature_name or DEFAULT_SIGNATURE}': "
            f"missing {missing}, unexpected {extra}, expected {sorted(expected)}")


def signature_def_map(signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
                      ) -> get_model_metadata_pb2.SignatureDefMap:
    """The signature defs as the `SignatureDefMap` proto of a metadata response (gRPC packs it in an Any)."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature_def)
    return signature_map


def signature_def_map_json(signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]) -> Dict[str, Any]:
    """The signature defs as TF Serving prints them in a REST metadata response.

    TF Serving serialises a `SignatureDefMap` proto with proto field names and default-valued fields printed
    (so `"name": ""` and `"unknown_rank": false` appear and int64 sizes are strings); the same proto through
    protobuf's JSON printer gives the same document.
    """
    signature_map = signature_def_map(signature_defs)
    return json_format.MessageToDict(signature_map, including_default_value_fields=True,
                                     preserving_proto_field_name=True)

"""Where a backbone's initial weights come from: `patch_training.backbone_weights` -> a local weights file.

- None: random init (no file).
- "imagenet": the published no-top file of the backbone, found where tf_keras's own loader caches it
  (`$KERAS_HOME/models/<file>`, KERAS_HOME defaulting to ~/.keras) and used as is; when it is not there it is
  downloaded into that cache with `tf_keras.utils.get_file` (its published hash checked).
- a path: a local file, or an object in a bucket (gs://, s3://: any scheme `mammo_tfx.storage` reads), which is
  copied once into the Keras cache (keyed by its URI: treat weight files as immutable, a new file gets a new name).

Every way of failing raises BackboneWeightsUnavailable, whose message names the setting, the file looked for and
how to provide it offline. The pipeline resolves the weights before any component runs (pipeline/runners.py) and
the patch Trainer resolves them again (a cache hit), so a pod without them fails before it reads any data.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from typing import Optional

from mammo_tfx import storage

WEIGHTS_SETTING = "patch_training.backbone_weights"
IMAGENET = "imagenet"
KERAS_HOME_ENV = "KERAS_HOME"
# tf_keras's cache layout: get_file(..., cache_subdir="models") under the Keras home.
KERAS_MODELS_SUBDIR = "models"
# Copies of bucket weight files, next to tf_keras's own downloads.
BUCKET_COPIES_SUBDIR = os.path.join(KERAS_MODELS_SUBDIR, "mammo-tfx")


@dataclasses.dataclass(frozen=True)
class PublishedWeights:
    file_name: str
    origin: str
    md5: str


# The no-top ImageNet files exactly as tf_keras 2.x's applications name, fetch and check them
# (tf_keras/src/applications/resnet.py BASE_WEIGHTS_PATH + WEIGHTS_HASHES["resnet50"][1]; vgg16.py
# WEIGHTS_PATH_NO_TOP and its file_hash), so a file tf_keras already downloaded is found here and vice versa.
IMAGENET_NOTOP = {
    "resnet50": PublishedWeights(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626"),
    "vgg16": PublishedWeights(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc"),
}


class BackboneWeightsUnavailable(RuntimeError):
    """The configured backbone weights cannot be found or fetched; the message says what to do."""


def keras_home() -> str:
    """The Keras home tf_keras reads its config from: $KERAS_HOME, else ~/.keras."""
    return os.path.expanduser(os.environ.get(KERAS_HOME_ENV) or os.path.join("~", ".keras"))


def imagenet_cache_path(backbone: str) -> str:
    """Where the backbone's no-top ImageNet file is looked for (and downloaded to)."""
    if backbone not in IMAGENET_NOTOP:
        raise ValueError(f"{WEIGHTS_SETTING}={IMAGENET!r}: backbone {backbone!r} has no published ImageNet weights; "
                         f"ImageNet weights exist for {sorted(IMAGENET_NOTOP)}")
    return os.path.join(keras_home(), KERAS_MODELS_SUBDIR, IMAGENET_NOTOP[backbone].file_name)


def _offline_hint(backbone: str) -> str:
    return (f"To provide it offline: copy {IMAGENET_NOTOP[backbone].file_name} to {imagenet_cache_path(backbone)}, "
            f"or set {KERAS_HOME_ENV} to a folder whose {KERAS_MODELS_SUBDIR}/ holds it, or set {WEIGHTS_SETTING} to "
            "the file's local or bucket path.")


def _download_imagenet(backbone: str) -> str:
    from tf_keras.utils import get_file  # here: resolving a local path must not need TensorFlow

    published, cached = IMAGENET_NOTOP[backbone], imagenet_cache_path(backbone)
    try:
        return get_file(published.file_name, published.origin, file_hash=published.md5,
                        cache_subdir=KERAS_MODELS_SUBDIR, cache_dir=keras_home())
    except Exception as error:  # get_file: Exception (naming the URL) when the fetch fails, ValueError on a bad hash
        if os.path.isfile(cached):  # get_file keeps a file that failed its hash check; it must not pass for the cache
            os.remove(cached)
        raise BackboneWeightsUnavailable(
            f"{WEIGHTS_SETTING}={IMAGENET!r}: the {backbone} ImageNet weights are not in the Keras cache (looked for "
            f"{cached}) and downloading them failed ({error}). {_offline_hint(backbone)}") from None


def _bucket_copy(uri: str) -> str:
    """A local copy of a bucket file, made once per URI (written to a temporary name, then renamed, so an
    interrupted copy is never taken for a cached one)."""
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    local = os.path.join(keras_home(), BUCKET_COPIES_SUBDIR, key, storage.basename(uri))
    if os.path.isfile(local):
        return local
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with storage.open_binary(uri) as source, tempfile.NamedTemporaryFile(
            dir=os.path.dirname(local), delete=False) as target:
        try:
            shutil.copyfileobj(source, target, length=16 << 20)
        except BaseException:
            os.remove(target.name)
            raise
    os.replace(target.name, local)
    return local


def resolve_backbone_weights(backbone: str, weights: Optional[str]) -> Optional[str]:
    """The local weights file for `patch_training.backbone_weights` (None: random init); see the module doc."""
    if weights is None:
        return None
    if weights == IMAGENET:
        cached = imagenet_cache_path(backbone)
        # Used as is, without the hash check get_file would do: a file put there on purpose is not replaced.
        return cached if os.path.isfile(cached) else _download_imagenet(backbone)
    try:
        if storage.is_file(weights):
            return _bucket_copy(weights) if storage.is_remote(weights) else weights
        reason = "no such file"
    except OSError as error:  # storage.StorageError: the store refused or failed the request
        reason = str(error)
    raise BackboneWeightsUnavailable(
        f"{WEIGHTS_SETTING}={weights!r}: cannot read the weights file ({reason}). Give the local or bucket path of "
        f"a Keras weights file of the {backbone} trunk, '{IMAGENET}', or null (random init).")

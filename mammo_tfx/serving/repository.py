"""The versions of one model under a base directory, and a watcher that keeps the newest one loaded.

TF Serving's rules, kept here: a version is an integer-named directory; the highest complete version is
served; a new version is loaded (and warmed up) before it replaces the old one; if it fails to load, the
old one keeps serving. "Complete" means `saved_model.pb` exists, because the TFX Pusher copies that file
last. The Pusher may be caught mid-copy of `saved_model.pb` itself, so a failed version is retried once
its file changes instead of being given up for good.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from mammo_tfx.serving.errors import NotFound
from mammo_tfx.serving.model import LoadedModel, load_model
from mammo_tfx.serving.warmup import replay_warmup

logger = logging.getLogger(__name__)

ModelLoader = Callable[[str, int], LoadedModel]


def list_complete_versions(base_path: str) -> List[int]:
    """Integer version directories under `base_path` that contain `saved_model.pb`, ascending."""
    if not tf.io.gfile.isdir(base_path):
        return []
    versions = []
    for entry in tf.io.gfile.listdir(base_path):
        name = entry.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(base_path, name, "saved_model.pb")):
            versions.append(int(name))
    return sorted(versions)


@dataclasses.dataclass(frozen=True)
class ModelFolder:
    """One SavedModel found from a path a user names: its folder, and its version when it is an integer version
    folder of a base directory (None for a bare export)."""

    path: str
    version: Optional[int]

    @property
    def base_directory(self) -> Optional[str]:
        """The base directory the version belongs to (where a next version goes); None for a bare export."""
        return os.path.dirname(self.path.rstrip("/")) if self.version is not None else None


def find_model_folder(path: str) -> Optional[ModelFolder]:
    """The model `path` names: a base directory (its newest complete version), a version folder, or a bare export
    (a folder holding saved_model.pb); None when it holds none of them (e.g. a base directory nothing was pushed
    to yet)."""
    path = path.rstrip("/")
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        name = os.path.basename(path)
        return ModelFolder(path, int(name) if name.isdigit() else None)
    versions = list_complete_versions(path)
    return ModelFolder(os.path.join(path, str(versions[-1])), versions[-1]) if versions else None


def load_and_warm_up(path: str, version: int) -> LoadedModel:
    """Load a version and replay its warm-up requests, as TF Serving does before a version goes live."""
    model = load_model(path, version)
    replayed = replay_warmup(path, model.predict)
    logger.info("loaded version %d from %s (%d warm-up requests replayed)", version, path, replayed)
    return model


@dataclasses.dataclass(frozen=True)
class VersionState:
    """One row of a model status response."""

    version: int
    state: str  # AVAILABLE or END, TF Serving's ManagerState names
    error_code: str
    error_message: str


class ModelRepository:
    """Keeps the newest loadable version of one model in memory and swaps in newer ones as they appear."""

    def __init__(self, base_path: str, poll_interval_s: float = 2.0, loader: ModelLoader = load_and_warm_up) -> None:
        self.base_path = base_path
        self.poll_interval_s = poll_interval_s
        self._loader = loader
        self._current: Optional[LoadedModel] = None
        # version -> (fingerprint of its saved_model.pb when it failed, error message)
        self._failures: Dict[int, Tuple[Tuple[int, int], str]] = {}
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def current(self) -> Optional[LoadedModel]:
        """The version serving now, or None before the first successful load."""
        return self._current

    def get(self, model_name: str, version: Optional[int] = None) -> LoadedModel:
        """The serving model, or NotFound when there is none or `version` is not the one served."""
        model = self._current
        if model is None or (version is not None and version != model.version):
            wanted = f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
            raise NotFound(f"Servable not found for request: {wanted}")
        return model

    def version_states(self) -> List[VersionState]:
        """The served version and any newer versions that failed to load, newest first."""
        model = self._current
        states = []
        for version, (_, message) in sorted(self._failures.items(), reverse=True):
            if model is None or version > model.version:
                states.append(VersionState(version, "END", "UNKNOWN", message))
        if model is not None:
            states.append(VersionState(model.version, "AVAILABLE", "OK", ""))
        return states

    def poll_once(self) -> Optional[int]:
        """Look at the base directory once and load the newest version if it is not served yet.

        Returns the version served afterwards (None if nothing could be loaded so far).
        """
        with self._poll_lock:
            versions = list_complete_versions(self.base_path)
            current = self._current
            if not versions:
                if current is not None:
                    logger.warning("no complete versions left under %s; still serving version %d",
                                   self.base_path, current.version)
                return None if current is None else current.version
            # Newest first: if the newest fails, an older but newer-than-served version is still an upgrade;
            # if the served version was deleted from disk, the highest remaining one takes over (rollback).
            for version in reversed(versions):
                if current is not None and version == current.version:
                    break
                if self._try_load(version):
                    break
            return None if self._current is None else self._current.version

    def _try_load(self, version: int) -> bool:
        path = os.path.join(self.base_path, str(version))
        fingerprint = self._fingerprint(path)
        failure = self._failures.get(version)
        if failure is not None and failure[0] == fingerprint:
            return False
        try:
            model = self._loader(path, version)
        except Exception as error:  # noqa: BLE001 - any load failure must leave the served version in place
            message = f"{type(error).__name__}: {error}"
            # Copy-on-write: request threads read the dict in version_states() without the poll lock.
            self._failures = {**self._failures, version: (fingerprint, message)}
            served = "nothing" if self._current is None else f"version {self._current.version}"
            logger.error("failed to load version %d from %s, still serving %s: %s", version, path, served, message)
            return False
        previous = self._current
        self._current = model
        self._failures = {v: f for v, f in self._failures.items() if v > version}
        logger.info("now serving version %d (was %s)", version, "none" if previous is None else previous.version)
        return True

    @staticmethod
    def _fingerprint(path: str) -> Tuple[int, int]:
        try:
            stat = tf.io.gfile.stat(os.path.join(path, "saved_model.pb"))
        except tf.errors.NotFoundError:
            # Deleted between listing and now; the load attempt will fail and be retried when it reappears.
            return -1, -1
        return stat.length, stat.mtime_nsec

    def start(self) -> None:
        """Load what is there now, then keep polling in a daemon thread until `stop()`."""
        self.poll_once()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="model-version-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a flaky filesystem must not kill the watcher
                logger.exception("polling %s failed", self.base_path)

"""The patient-key salt: where ingestion reads it, and the fingerprint that stands for it everywhere else.

Keys are pseudonyms only while the salt stays secret: whoever has it can hash candidate ids and re-identify
examples. So the salt is read where ingestion runs, from the environment variable `MAMMO_TFX_PATIENT_SALT` or from
a file (a mounted secret, a bucket object only the pipeline may read), and kept in memory. What travels in
properties, compiled pipelines, logs and artifacts is at most the file's path and the salt's fingerprint: an
HMAC-SHA256 of a fixed message under the salt, which changes with the salt (so caches and lineage follow a new
salt) and does not give the salt back.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

from mammo_tfx import storage

PATIENT_SALT_ENV = "MAMMO_TFX_PATIENT_SALT"
# Not a secret: runs that keep it (demo, tests) produce keys anyone can recompute from the public ids.
DEFAULT_PATIENT_SALT = "mammo-tfx-default-salt-change-me"
# Shorter salts can be found by trying candidates against a fingerprint or a known key.
MIN_SECRET_SALT_CHARS = 16
_FINGERPRINT_MESSAGE = b"mammo-tfx patient-key salt fingerprint v1"
FINGERPRINT_HEX_CHARS = 32
HOW_TO_SET = (f"set the environment variable {PATIENT_SALT_ENV}, or ingest.patient_salt_file to a file that holds "
              "the salt (docs/patient-salt.md)")

_warned_default = False


def salt_fingerprint(salt: str) -> str:
    """32 hex chars of HMAC-SHA256 of a fixed message keyed by the salt."""
    return hmac.new(salt.encode("utf-8"), _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:FINGERPRINT_HEX_CHARS]


@dataclass(frozen=True)
class PatientSalt:
    """A salt and where it was read from (`source` names the variable or the file, never the value)."""

    value: str = field(repr=False)
    source: str

    @property
    def is_default(self) -> bool:
        return self.value == DEFAULT_PATIENT_SALT

    @property
    def fingerprint(self) -> str:
        return salt_fingerprint(self.value)


def _read_salt_file(path: str) -> str:
    try:
        raw = storage.read_bytes(path)
    except OSError as error:
        raise ValueError(f"Cannot read the patient-key salt file {path}: {error.strerror or error}") from None
    try:
        # Secrets are often written with a trailing newline (echo, kubectl create secret --from-file).
        salt = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"The patient-key salt file {path} is not UTF-8 text") from None
    if not salt:
        raise ValueError(f"The patient-key salt file {path} is empty")
    return salt


def read_patient_salt(salt_file: str = "", environ: Optional[Mapping[str, str]] = None) -> PatientSalt:
    """The salt from `salt_file` if one is configured, else from `MAMMO_TFX_PATIENT_SALT`, else the public default.

    Both set to different salts is an error: a run must not silently pick one of two secrets."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(PATIENT_SALT_ENV, "").strip()
    if salt_file:
        from_file = _read_salt_file(salt_file)
        if from_env and from_env != from_file:
            raise ValueError(f"The environment variable {PATIENT_SALT_ENV} and the salt file {salt_file} hold "
                             "different patient-key salts; keep one of them")
        return PatientSalt(from_file, f"the file {salt_file}")
    if from_env:
        return PatientSalt(from_env, f"the environment variable {PATIENT_SALT_ENV}")
    return PatientSalt(DEFAULT_PATIENT_SALT, "the public default salt")


def say_where_the_salt_comes_from(salt: PatientSalt, logger: logging.Logger) -> None:
    """One log line: the salt's source and fingerprint; a warning once per process for the public default, and a
    warning for a short salt."""
    global _warned_default
    if salt.is_default:
        if not _warned_default:
            logger.warning("Patient keys use the public default salt, so they are not secret: anyone can recompute "
                           "them from the datasets' patient ids. Fine for demos and tests; for real data %s.",
                           HOW_TO_SET)
            _warned_default = True
        return
    logger.info("Patient keys are salted with the salt from %s (fingerprint %s).", salt.source, salt.fingerprint)
    if len(salt.value) < MIN_SECRET_SALT_CHARS:
        logger.warning("The patient-key salt from %s has fewer than %d characters and can be guessed; use a random "
                       "one, e.g. the output of `openssl rand -hex 32`.", salt.source, MIN_SECRET_SALT_CHARS)

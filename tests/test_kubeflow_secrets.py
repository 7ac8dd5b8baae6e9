"""The patient-key salt on Kubeflow: a Kubernetes Secret mounted into the ExampleGen step alone through KFP's
platform spec; the compiled files hold its fingerprint, never the salt. Compiling runs nothing and stays offline."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest
import yaml
from google.protobuf import json_format
from kfp import components as kfp_components
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_config
from kfp.pipeline_spec import pipeline_spec_pb2

from components.mammo_example_gen.executor import decode_custom_config
from mammo_tfx.ingest.salt import PATIENT_SALT_ENV, salt_fingerprint
from pipeline import kubeflow
from pipeline.config import load_config
from pipeline.kubeflow_secrets import SALT_MOUNT_DIR

IMAGE = "europe-docker.pkg.dev/mammo-project/mammo/mammo-tfx:2024-06-01"
PIPELINE_ROOT = "gs://mammo-bucket/pipeline-root"
MANIFEST_DIR = "gs://mammo-bucket/manifests/run-1"
SALT = "8b1f2c3d4e5f60718293a4b5c6d7e8f9"
SECRET = ["kubeflow.patient_salt_secret=mammo-patient-salt", "kubeflow.patient_salt_secret_key=salt"]


def _compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: List[str], name: str = "pipeline.yaml",
             profile: str = "production") -> tuple[Dict[str, Any], str]:
    """Compiles with the salt in the compiling shell's environment (as a user with the secret at hand would)."""
    monkeypatch.setenv(PATIENT_SALT_ENV, SALT)
    out = tmp_path / name
    job = kubeflow.compile_kfp(load_config(profile, overrides=overrides), IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(out))
    return job, out.read_text()


def _documents(text: str) -> List[Dict[str, Any]]:
    return list(yaml.safe_load_all(text))


def _example_gen_options(job: Dict[str, Any]):
    parameters = job["pipelineSpec"]["root"]["dag"]["tasks"]["MammoExampleGen"]["inputs"]["parameters"]
    value = parameters["custom_config"]["runtimeValue"]
    # Schema 2.1 writes `constant`, 2.0 the deprecated `constantValue`.
    return decode_custom_config(value["constant"] if "constant" in value else value["constantValue"]["stringValue"])


def _executor_label(job: Dict[str, Any], task: str) -> str:
    spec = job["pipelineSpec"]
    return spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]


def test_the_secret_is_mounted_as_the_variable_into_the_example_gen_alone(tmp_path, monkeypatch):
    job, text = _compile(tmp_path, monkeypatch, SECRET)
    pipeline_doc, platform_doc = _documents(text)
    assert pipeline_doc == job["pipelineSpec"]
    json_format.ParseDict(pipeline_doc, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    assert list(executors) == [_executor_label(job, "MammoExampleGen")]  # no other step gets the secret
    mount = json_format.ParseDict(json_format.MessageToDict(executors[_executor_label(job, "MammoExampleGen")]),
                                  k8s_config.KubernetesExecutorConfig(), ignore_unknown_fields=False)
    assert [(s.secret_name, [(m.secret_key, m.env_var) for m in s.key_to_env]) for s in mount.secret_as_env] == [
        ("mammo-patient-salt", [("salt", PATIENT_SALT_ENV)])]
    assert not mount.secret_as_volume
    # KFP's own loader reads both documents, as the backend does on upload.
    component = kfp_components.load_component_from_file(str(tmp_path / "pipeline.yaml"))
    assert component.platform_spec.platforms["kubernetes"].deployment_spec.executors.keys() == executors.keys()

    options = _example_gen_options(job)
    assert options.patient_salt_fingerprint == salt_fingerprint(SALT) and options.patient_salt_file == ""
    assert SALT not in text


def test_the_secret_can_be_mounted_as_a_file_the_example_gen_reads(tmp_path, monkeypatch):
    job, text = _compile(tmp_path, monkeypatch, SECRET + ["kubeflow.patient_salt_as=file"])
    _, platform_doc = _documents(text)
    executor = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        _executor_label(job, "MammoExampleGen")]
    assert executor == {"secretAsVolume": [{"secretName": "mammo-patient-salt", "mountPath": SALT_MOUNT_DIR,
                                           "optional": False}]}
    assert _example_gen_options(job).patient_salt_file == f"{SALT_MOUNT_DIR}/salt"
    assert SALT not in text


def test_without_a_source_of_the_salt_a_production_compile_says_how_to_give_one(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Profile production needs a secret patient-key salt.*"
                                         "kubeflow.patient_salt_secret.*ingest.patient_salt_file"):
        _compile(tmp_path, monkeypatch, [])
    assert list(tmp_path.iterdir()) == []
    # Demo and test profiles compile with the public default salt.
    job, text = _compile(tmp_path, monkeypatch, [], profile="test")
    assert len(_documents(text)) == 1 and SALT not in text


def test_a_pipeline_job_cannot_carry_the_secret_mount(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="only the .yaml form carries"):
        _compile(tmp_path, monkeypatch, SECRET, name="pipeline.json")
    # Vertex AI: the ExampleGen reads a bucket object that only the pipeline may read; the JSON holds its path.
    job, text = _compile(tmp_path, monkeypatch, ["ingest.patient_salt_file=gs://mammo-secrets/patient-salt"],
                         name="pipeline.json")
    assert json.loads(text) == job and SALT not in text
    options = _example_gen_options(job)
    assert options.patient_salt_file == "gs://mammo-secrets/patient-salt"
    assert options.patient_salt_fingerprint == salt_fingerprint(SALT)

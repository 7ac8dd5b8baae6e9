"""The patient-key salt on Kubeflow: a Kubernetes Secret mounted into the ExampleGen step, never a value in the
compiled pipeline.

The mount is KFP's Kubernetes platform configuration, the document that the `kfp-kubernetes` extension writes after
the pipeline spec in a compiled YAML (`platforms.kubernetes.deploymentSpec.executors.<executor label>`, a
`KubernetesExecutorConfig` with `secretAsEnv` / `secretAsVolume`); the open-source KFP backend reads both documents
of an uploaded YAML and gives the mount to that executor's pod alone. A Vertex AI PipelineJob (the `.json` form)
has no place for it: there the ExampleGen reads `ingest.patient_salt_file`, e.g. a bucket object that only the
pipeline's service account may read. docs/patient-salt.md says how to set each up.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from google.protobuf import json_format

from mammo_tfx.ingest.salt import PATIENT_SALT_ENV, read_patient_salt
from pipeline.config import SALT_AS_FILE, KubeflowConfig, PipelineConfig

# Where the ExampleGen pod sees the Secret's keys as files (patient_salt_as "file").
SALT_MOUNT_DIR = "/var/run/secrets/mammo-tfx/patient-salt"
# Profiles whose compile refuses to run without a configured source of the salt.
SECRET_SALT_PROFILES = ("production",)
HOW_TO_MOUNT = (
    "name a Kubernetes Secret that holds it (kubeflow.patient_salt_secret, and its key kubeflow.patient_salt_secret_key, "
    "default salt; create it with `kubectl create secret generic NAME --from-literal=salt=$(openssl rand -hex 32)`), "
    "or, on Vertex AI, set ingest.patient_salt_file to a bucket object that only the pipeline's service account "
    "can read (docs/patient-salt.md)")


@dataclass(frozen=True)
class SaltSecretMount:
    """A Kubernetes Secret key mounted into one step as MAMMO_TFX_PATIENT_SALT or as a file under SALT_MOUNT_DIR."""

    secret_name: str
    secret_key: str
    as_file: bool

    @property
    def file_path(self) -> str:
        return f"{SALT_MOUNT_DIR}/{self.secret_key}"

    def executor_config(self) -> Dict[str, Any]:
        """The step's KubernetesExecutorConfig, as JSON."""
        # Imported here: only compiling needs kfp-kubernetes (requirements/stack.txt), not the step image.
        from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_config

        config = k8s_config.KubernetesExecutorConfig()
        if self.as_file:
            config.secret_as_volume.append(k8s_config.SecretAsVolume(
                secret_name=self.secret_name, mount_path=SALT_MOUNT_DIR, optional=False))
        else:
            config.secret_as_env.append(k8s_config.SecretAsEnv(
                secret_name=self.secret_name,
                key_to_env=[k8s_config.SecretAsEnv.SecretKeyToEnvMap(secret_key=self.secret_key,
                                                                      env_var=PATIENT_SALT_ENV)]))
        return json_format.MessageToDict(config)


def prepare_patient_salt(
    config: PipelineConfig, kubeflow: KubeflowConfig, out_path: str, environ: Optional[Mapping[str, str]] = None,
) -> Tuple[PipelineConfig, Optional[SaltSecretMount]]:
    """The configuration to compile (the salt's file path and fingerprint filled in) and the Secret to mount.

    The fingerprint is `ingest.patient_salt_fingerprint` if set, else that of MAMMO_TFX_PATIENT_SALT where the
    compile runs (only the fingerprint is written); without either, the compiled pipeline carries none, and KFP's
    cache would re-use an ExampleGen output made with an earlier salt (said in a warning)."""
    mount = None
    if kubeflow.patient_salt_secret:
        if not out_path.endswith((".yaml", ".yml")):
            raise ValueError(
                f"{out_path}: a Kubernetes Secret (kubeflow.patient_salt_secret) is mounted through KFP's platform "
                "configuration, which only the .yaml form carries; compile to .yaml for open-source KFP, or on "
                "Vertex AI leave kubeflow.patient_salt_secret empty and set ingest.patient_salt_file")
        mount = SaltSecretMount(kubeflow.patient_salt_secret, kubeflow.patient_salt_secret_key,
                                kubeflow.patient_salt_as == SALT_AS_FILE)
        if mount.as_file:
            if config.ingest.patient_salt_file not in ("", mount.file_path):
                raise ValueError(
                    f"ingest.patient_salt_file {config.ingest.patient_salt_file} and the Secret mounted as a file "
                    f"at {mount.file_path} name two salts; keep one of them")
            config = dataclasses.replace(
                config, ingest=dataclasses.replace(config.ingest, patient_salt_file=mount.file_path))
    elif not config.ingest.patient_salt_file and config.profile in SECRET_SALT_PROFILES:
        raise ValueError(
            f"Profile {config.profile} needs a secret patient-key salt where the ExampleGen runs, and none is "
            f"configured: {HOW_TO_MOUNT}")

    if not config.ingest.patient_salt_file and mount is None:
        logging.getLogger(__name__).warning(
            "No patient-key salt is configured for the Kubeflow ExampleGen: its keys will use the public default salt "
            "and are not secret.")
    local_salt = read_patient_salt(environ=environ) if not config.ingest.patient_salt_fingerprint else None
    if local_salt is not None and not local_salt.is_default:
        config = config.for_patient_salt(local_salt.fingerprint)
    elif not config.ingest.patient_salt_fingerprint and (mount or config.ingest.patient_salt_file):
        logging.getLogger(__name__).warning(
            "The compiled pipeline carries no fingerprint of the patient-key salt, so KFP's cache will re-use an "
            "ExampleGen output made with an earlier salt after the secret changes. Set %s to the salt while "
            "compiling (only its fingerprint is written), or set ingest.patient_salt_fingerprint.", PATIENT_SALT_ENV)
    return config, mount


def salt_platform_spec(pipeline_job: Mapping[str, Any], component_id: str, mount: SaltSecretMount) -> Dict[str, Any]:
    """The PlatformSpec document that mounts the Secret into `component_id`'s step and no other."""
    spec = pipeline_job["pipelineSpec"]
    component_name = spec["root"]["dag"]["tasks"][component_id]["componentRef"]["name"]
    executor_label = spec["components"][component_name]["executorLabel"]
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
        executor_label: mount.executor_config()}}}}}

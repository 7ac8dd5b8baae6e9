"""Beam args: TFX must find how workers get the code, so it never packs its own source into /tmp per component."""
import os

import pytest
from tfx.utils import dependency_utils

from pipeline.config import BeamConfig, load_config
from pipeline.paths import SETUP_FILE


@pytest.mark.parametrize("profile", ["demo", "production", "test"])
def test_direct_runner_args_keep_tfx_from_building_its_sdist(profile):
    args = load_config(profile).beam.pipeline_args()
    assert f"--setup_file={SETUP_FILE}" in args and os.path.isfile(SETUP_FILE)
    # The very check TFX's Beam executors run: unchanged args mean no tfx_ephemeral sdist is built.
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_a_dependency_flag_of_the_user_replaces_the_setup_file():
    args = BeamConfig(extra_args=("--requirements_file=/srv/req.txt",)).pipeline_args()
    assert not any(arg.startswith("--setup_file") for arg in args)
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_a_remote_runner_must_say_how_workers_get_the_project():
    with pytest.raises(ValueError, match="sdk_container_image"):
        load_config("production", overrides=["beam.runner=DataflowRunner"])
    config = load_config("production", overrides=[
        "beam.runner=DataflowRunner", "beam.extra_args=[--sdk_container_image=gcr.io/p/mammo-tfx:1]"])
    assert config.beam.pipeline_args() == ["--runner=DataflowRunner", "--sdk_container_image=gcr.io/p/mammo-tfx:1"]


def test_a_portable_runner_may_run_workers_in_a_given_environment():
    config = BeamConfig(runner="PortableRunner", extra_args=(
        "--job_endpoint=flink-jobserver:8099", "--environment_type=EXTERNAL", "--environment_config=localhost:50000"))
    assert config.pipeline_args()[0] == "--runner=PortableRunner"

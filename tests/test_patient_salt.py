"""The patient-key salt: read where the ExampleGen runs (environment or a configured file), known elsewhere only by
its fingerprint; never in a property, a metadata store, an artifact or a log."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

import pytest
from tfx import v1 as tfx

from mammo_tfx import synth
from mammo_tfx.ingest import salt as salt_module
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.salt import (DEFAULT_PATIENT_SALT, PATIENT_SALT_ENV, read_patient_salt,
                                   say_where_the_salt_comes_from, salt_fingerprint)
from pipeline.config import load_config
from pipeline.pipeline import create_components
from pipeline.runners import LocalRunLayout, for_local_salt
from pipeline.sources import DataSource, write_manifest
from tests.conftest import feature, read_split, run_executor

SALT_A = "4f1c0e9a7b2d4d1e8c3b5a6f7e8d9c0b"
SALT_B = "d2a6e7c1b3f94b0a8e5d6c7f1a2b3c4d"


def test_the_fingerprint_is_an_hmac_under_the_salt_and_follows_it():
    assert salt_fingerprint(SALT_A) == hmac.new(SALT_A.encode(), b"mammo-tfx patient-key salt fingerprint v1",
                                                hashlib.sha256).hexdigest()[:32]
    assert salt_fingerprint(SALT_A) == salt_fingerprint(SALT_A) != salt_fingerprint(SALT_B)
    assert SALT_A not in salt_fingerprint(SALT_A)


def test_the_salt_comes_from_the_configured_file_or_else_the_environment(tmp_path):
    salt_file = tmp_path / "salt"
    salt_file.write_text(SALT_A + "\n")  # as `echo` or a Kubernetes Secret file may leave it
    from_file = read_patient_salt(str(salt_file), environ={})
    assert from_file.value == SALT_A and str(salt_file) in from_file.source
    assert SALT_A not in repr(from_file)
    assert read_patient_salt(str(salt_file), environ={PATIENT_SALT_ENV: SALT_A}).value == SALT_A
    from_env = read_patient_salt("", environ={PATIENT_SALT_ENV: SALT_B})
    assert from_env.value == SALT_B and PATIENT_SALT_ENV in from_env.source
    default = read_patient_salt("", environ={})
    assert default.is_default and default.value == DEFAULT_PATIENT_SALT


def test_a_missing_empty_or_contradicted_salt_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "salt"
    with pytest.raises(ValueError, match=f"Cannot read the patient-key salt file {missing}"):
        read_patient_salt(str(missing), environ={})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=f"salt file {empty} is empty"):
        read_patient_salt(str(empty), environ={})
    salt_file = tmp_path / "salt"
    salt_file.write_text(SALT_A)
    with pytest.raises(ValueError, match=f"{PATIENT_SALT_ENV} and the salt file {salt_file} hold different"):
        read_patient_salt(str(salt_file), environ={PATIENT_SALT_ENV: SALT_B})


def test_the_default_salt_is_said_once_to_be_no_secret(monkeypatch, caplog):
    monkeypatch.setattr(salt_module, "_warned_default", False)
    logger = logging.getLogger("salt-test")
    with caplog.at_level(logging.INFO, logger="salt-test"):
        for _ in range(3):
            say_where_the_salt_comes_from(read_patient_salt("", environ={}), logger)
        say_where_the_salt_comes_from(read_patient_salt("", environ={PATIENT_SALT_ENV: "q7Zx"}), logger)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("not secret" in message for message in warnings) == 1
    assert any("fewer than 16 characters" in message for message in warnings)
    assert not any("q7Zx" in r.getMessage() for r in caplog.records)


def _folder_dataset(root: Path) -> DataSource:
    # Six women: under either test salt the split minimums can give eval and test both classes (with four they
    # cannot, and the run stops after ingestion, as it should).
    synth.generate("mias", root, patients=6, seed=5, scale=0.25)
    return DataSource.parse(f"mias={root}")


def _patient_keys(examples_uri: str) -> set[str]:
    return {feature(example, "patient_key") for split in ("train", "eval", "test")
            for example in read_split(examples_uri, split)}


def test_the_executor_refuses_a_salt_other_than_the_one_the_pipeline_was_built_for(tmp_path, monkeypatch):
    source = _folder_dataset(tmp_path / "mias")
    monkeypatch.setenv(PATIENT_SALT_ENV, SALT_B)
    built_for_a = IngestOptions(height=64, width=48, patient_salt_fingerprint=salt_fingerprint(SALT_A))
    with pytest.raises(ValueError, match=f"fingerprint {salt_fingerprint(SALT_B)}, but this pipeline was built for "
                                         f"the salt with the fingerprint {salt_fingerprint(SALT_A)}"):
        run_executor([source], str(tmp_path / "out-b"), built_for_a)
    monkeypatch.setenv(PATIENT_SALT_ENV, SALT_A)
    examples, _ = run_executor([source], str(tmp_path / "out-a"), built_for_a)
    assert examples.get_string_custom_property("patient_salt_fingerprint") == salt_fingerprint(SALT_A)


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Files under root whose bytes hold any of needles (gzip-compressed files are read as written: the example
    files are checked through their parsed keys instead)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {needle!r}" for needle in needles if needle in data]
    return found


def _run_example_gen(config, layout: LocalRunLayout, source: DataSource) -> None:
    """The ExampleGen of the real pipeline definition, alone, under LocalDagRunner with a SQLite metadata store."""
    config = for_local_salt(config)
    write_manifest([source], layout.manifest_dir)
    example_gen = create_components(config, layout.manifest_dir, layout.pipeline_root)[0]
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=layout.pipeline_root, components=[example_gen],
        enable_cache=True, beam_pipeline_args=config.beam.pipeline_args(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(layout.metadata_path)))


def _example_gen_outputs(layout: LocalRunLayout) -> list[str]:
    folder = Path(layout.pipeline_root) / "MammoExampleGen" / "examples"
    return sorted(os.listdir(folder))


@pytest.mark.e2e
def test_a_run_keeps_the_salt_out_of_every_file_and_a_new_salt_misses_the_cache(tmp_path, monkeypatch, capfd,
                                                                                 caplog):
    source = _folder_dataset(tmp_path / "mias")
    layout = LocalRunLayout(str(tmp_path / "out"))
    config = load_config("test", overrides=[f"ingest.patient_salt_file={tmp_path / 'secrets' / 'salt'}"])
    salt_file = tmp_path / "secrets" / "salt"
    salt_file.parent.mkdir()

    caplog.set_level(logging.DEBUG)
    executions = []
    for salt in (SALT_A, SALT_B, SALT_A):
        salt_file.write_text(salt)
        _run_example_gen(config, layout, source)
        executions.append(_example_gen_outputs(layout))
    # The new salt changed the ExampleGen's properties: it ran again instead of re-using the first output. The first
    # salt again re-uses the first output (no third execution): the cache follows the salt and nothing else.
    assert [len(outputs) for outputs in executions] == [1, 2, 2]
    examples_dir = Path(layout.pipeline_root) / "MammoExampleGen" / "examples"
    keys_a, keys_b = (_patient_keys(str(examples_dir / name)) for name in executions[-1])
    assert keys_a and keys_b and keys_a.isdisjoint(keys_b)

    needles = [SALT_A.encode(), SALT_B.encode()]
    assert _files_holding(Path(layout.out_dir), needles) == []
    # The scan reads the metadata store: the fingerprint, which the ExampleGen's properties do carry, is found there.
    assert any("metadata.sqlite" in hit for hit in _files_holding(Path(layout.out_dir),
                                                                  [salt_fingerprint(SALT_B).encode()]))
    out, err = capfd.readouterr()
    logged = out + err + "\n".join(record.getMessage() for record in caplog.records)
    assert SALT_A not in logged and SALT_B not in logged
    assert salt_fingerprint(SALT_A) in logged  # the log says which salt was used, by its fingerprint

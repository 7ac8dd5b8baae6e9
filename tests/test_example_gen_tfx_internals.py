"""MammoExampleGen leans on three TFX internals (docs/architecture.md, "MammoExampleGen and TFX internals"). These
tests pin them: a TFX upgrade that changes one fails here, naming what to re-check, instead of changing what the
ExampleGen writes without notice."""
from __future__ import annotations

import hashlib
import inspect

from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.types import standard_component_specs

from components.mammo_example_gen.component import MammoExampleGen, MammoExampleGenSpec
from components.mammo_example_gen.executor import Executor

# sha256 of the source of TFX 1.16's BaseExampleGenExecutor.Do, which Executor._generate re-implements with another
# split writer, and of FileBasedExampleGen.__init__, which MammoExampleGen.__init__ replaces to add an output.
TFX_DO_SHA256 = "f230f6699c2c803c0ebc376993dd44f82ef6f4d0b869ca75d5ade62b5d2074ea"
TFX_INIT_SHA256 = "bc4cb2d97782da8f6247e4c262eb631f1e7b5a7ba2bc5d093a01e1dd4fdeafa2"


def _source_sha256(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def test_the_copied_example_gen_do_is_still_tfx_s():
    assert _source_sha256(BaseExampleGenExecutor.Do) == TFX_DO_SHA256, (
        "TFX changed BaseExampleGenExecutor.Do: compare it with components/mammo_example_gen/executor.py "
        "Executor._generate (what it writes, the artifact properties it sets), update _generate, then this hash")


def test_the_skipped_file_based_example_gen_init_is_still_tfx_s():
    assert _source_sha256(FileBasedExampleGen.__init__) == TFX_INIT_SHA256, (
        "TFX changed FileBasedExampleGen.__init__: compare it with MammoExampleGen.__init__ (the spec values it "
        "fills in), update that, then this hash")
    # Every parameter of the base spec is still one MammoExampleGen sets, and the examples output is still there.
    init_parameters = set(inspect.signature(MammoExampleGen.__init__).parameters)
    spec_parameters = set(standard_component_specs.FileBasedExampleGenSpec.PARAMETERS)
    assert spec_parameters <= set(MammoExampleGenSpec.PARAMETERS)
    assert {"input_base", "custom_config", "output_config", "input_config"} <= init_parameters
    assert set(standard_component_specs.FileBasedExampleGenSpec.OUTPUTS) <= set(MammoExampleGenSpec.OUTPUTS)


def test_the_executor_overrides_the_hooks_the_base_class_calls():
    for hook in ("GenerateExamplesByBeam", "GetInputSourceToExamplePTransform", "Do"):
        assert hook in vars(Executor) and hook in vars(BaseExampleGenExecutor), hook
    assert (inspect.signature(Executor.GenerateExamplesByBeam).parameters.keys()
            == inspect.signature(BaseExampleGenExecutor.GenerateExamplesByBeam).parameters.keys())

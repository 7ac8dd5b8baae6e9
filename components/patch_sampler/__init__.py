"""TFX component that samples lesion/background patches from ExampleGen output."""
from components.patch_sampler.component import PatchSampler, PatchSamplerSpec

__all__ = ["PatchSampler", "PatchSamplerSpec"]

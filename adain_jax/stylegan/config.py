"""The StyleGAN generator and discriminator configurations, and the arithmetic of their layer plan.

Configs are frozen dataclasses, hashable, so they are static arguments of `jax.jit`. The layer
plan: synthesis starts at 4x4 and doubles up to ``resolution``; each resolution has two style
layers (two convolutions, or the input and one convolution at 4x4), so ``L = 2 * (log2(R) - 1)``
ws; the feature count halves per resolution step from ``max_features`` at 4x4 down to no less than
``min_features``. The discriminator mirrors it.
"""

from __future__ import annotations

import dataclasses
import math


def _check_resolution(resolution: int) -> int:
    log = round(math.log2(resolution)) if resolution > 0 else 0
    if resolution < 8 or 2 ** log != resolution:
        raise ValueError(f"resolution must be a power of 2 >= 8, got {resolution}")
    return log


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """A style-based generator (Karras et al., CVPR 2019) without progressive growing.

    The ``use_*`` / ``const_input`` switches are the ablation rows: ``use_mapping=False`` takes
    ``w = pixel_norm(z)``; ``use_styles=False`` replaces the per-layer AdaIN by pixel norm (the
    progressive-GAN baseline); ``const_input=False`` is the "traditional input" (a dense layer from
    the first layer's w to the 4x4 features); ``use_noise=False`` drops the noise inputs.
    """

    resolution: int = 16
    channels: int = 1
    latent_dim: int = 64
    max_features: int = 128
    min_features: int = 32
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    use_mapping: bool = True
    use_styles: bool = True
    const_input: bool = True
    use_noise: bool = True

    def __post_init__(self):
        _check_resolution(self.resolution)
        if self.channels < 1 or self.latent_dim < 1 or self.min_features < 1 or self.max_features < self.min_features:
            raise ValueError(f"bad sizes in {self}")
        if self.use_mapping and self.mapping_layers < 1:
            raise ValueError("mapping_layers must be >= 1 with use_mapping=True (use_mapping=False for none)")
        if self.mapping_layers < 0:
            raise ValueError(f"mapping_layers must be >= 0, got {self.mapping_layers}")
        if not self.use_styles and self.const_input:
            # Neither styles nor an input layer would read w: every latent would give the same image.
            raise ValueError("use_styles=False needs const_input=False (the latent must enter somewhere)")


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """The mirror of the synthesis network: fromRGB, two 3x3 convs per resolution with blur + 2x
    downsampling, minibatch standard deviation over groups of ``mbstd_group``, two dense layers."""

    resolution: int = 16
    channels: int = 1
    max_features: int = 128
    min_features: int = 32
    mbstd_group: int = 4

    def __post_init__(self):
        _check_resolution(self.resolution)
        if self.channels < 1 or self.min_features < 1 or self.max_features < self.min_features or self.mbstd_group < 1:
            raise ValueError(f"bad sizes in {self}")


def resolutions(cfg: GeneratorConfig | DiscriminatorConfig) -> list[int]:
    """4, 8, ..., resolution."""
    return [2 ** k for k in range(2, _check_resolution(cfg.resolution) + 1)]


def features(cfg: GeneratorConfig | DiscriminatorConfig, resolution: int) -> int:
    """Feature maps at ``resolution``: max_features at 4x4, halved per step, at least min_features."""
    step = round(math.log2(resolution)) - 2
    return max(cfg.min_features, cfg.max_features >> step)


def num_style_layers(cfg: GeneratorConfig) -> int:
    """L, the number of per-layer ws: two per resolution from 4x4 up."""
    return 2 * len(resolutions(cfg))


def to_dict(cfg: GeneratorConfig | DiscriminatorConfig) -> dict:
    """JSON-able form (checkpoint meta)."""
    return dataclasses.asdict(cfg)


def generator_config_from_dict(data: dict) -> GeneratorConfig:
    """The inverse of `to_dict`; unknown keys are an error (a config from another program)."""
    names = {f.name for f in dataclasses.fields(GeneratorConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown GeneratorConfig keys {unknown}")
    return GeneratorConfig(**data)

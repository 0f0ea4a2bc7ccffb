"""The AdaIN network layout: one table that the model, the converter and the tests share.

Each convolution is named after its VGG-19 layer. The table also records where that layer sits in
the official PyTorch files (`nn.Sequential` indices in ``vgg_normalised.pth`` and ``decoder.pth``,
as the PyTorch port's ``net.py`` builds them). The converter maps file keys to names through it, so the
model and the converter cannot disagree about shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeAlias

# The params pytrees: one network is {layer name: {"kernel": HWIO, "bias": (O,)}}. Named here, with
# the layers, so that code handling weights (files, the converter) need not import the networks (and
# Flax) for a type. The leaves are arrays of any kind (numpy, JAX, or shape structs when abstract).
Params: TypeAlias = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    name: str
    torch_index: int  # position of the nn.Conv2d in the official nn.Sequential
    in_channels: int
    out_channels: int
    kernel_size: int = 3
    pool_after: bool = False  # encoder: 2x2 ceil-mode max-pool after this layer's ReLU
    upsample_after: bool = False  # decoder: nearest 2x upsampling after this layer's ReLU
    relu: bool = True

    @property
    def torch_weight_shape(self) -> tuple[int, int, int, int]:
        """OIHW, as stored by PyTorch."""
        return (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    @property
    def flax_kernel_shape(self) -> tuple[int, int, int, int]:
        """HWIO, as Flax and `lax.conv_general_dilated` with NHWC inputs expect."""
        return (self.kernel_size, self.kernel_size, self.in_channels, self.out_channels)


# Encoder: normalised VGG-19 up to relu4_1. conv0 is the 1x1 convolution that maps RGB in [0, 1]
# to mean-subtracted BGR in [0, 255]; it has no ReLU and no padding.
ENCODER: tuple[ConvSpec, ...] = (
    ConvSpec("conv0", 0, 3, 3, kernel_size=1, relu=False),
    ConvSpec("conv1_1", 2, 3, 64),
    ConvSpec("conv1_2", 5, 64, 64, pool_after=True),
    ConvSpec("conv2_1", 9, 64, 128),
    ConvSpec("conv2_2", 12, 128, 128, pool_after=True),
    ConvSpec("conv3_1", 16, 128, 256),
    ConvSpec("conv3_2", 19, 256, 256),
    ConvSpec("conv3_3", 22, 256, 256),
    ConvSpec("conv3_4", 25, 256, 256, pool_after=True),
    ConvSpec("conv4_1", 29, 256, 512),
)

# The rest of the official VGG file (relu4_2 .. relu5_4). AdaIN never uses it; the converter keeps
# it only on request (--full-vgg) and otherwise just checks that it is well formed.
VGG_TAIL: tuple[ConvSpec, ...] = (
    ConvSpec("conv4_2", 32, 512, 512),
    ConvSpec("conv4_3", 35, 512, 512),
    ConvSpec("conv4_4", 38, 512, 512, pool_after=True),
    ConvSpec("conv5_1", 42, 512, 512),
    ConvSpec("conv5_2", 45, 512, 512),
    ConvSpec("conv5_3", 48, 512, 512),
    ConvSpec("conv5_4", 51, 512, 512),
)

# Decoder: mirrors the encoder from relu4_1 back to RGB; no activation after the last layer.
DECODER: tuple[ConvSpec, ...] = (
    ConvSpec("conv4_1", 1, 512, 256, upsample_after=True),
    ConvSpec("conv3_4", 5, 256, 256),
    ConvSpec("conv3_3", 8, 256, 256),
    ConvSpec("conv3_2", 11, 256, 256),
    ConvSpec("conv3_1", 14, 256, 128, upsample_after=True),
    ConvSpec("conv2_2", 18, 128, 128),
    ConvSpec("conv2_1", 21, 128, 64, upsample_after=True),
    ConvSpec("conv1_2", 25, 64, 64),
    ConvSpec("conv1_1", 28, 64, 3, relu=False),
)

# Feature maps the encoder returns: the ReLU outputs used by the style loss; relu4_1 feeds AdaIN.
FEATURE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")

# Ceil-mode pooling happens three times before relu4_1, so feature maps are ceil(H / 8) high.
DOWNSAMPLE_FACTOR = 8

"""The official PyTorch files' layout -> the library's weights pytree, with every check the converter promises.

`weights_from_torch` maps the ``nn.Sequential`` indices of ``vgg_normalised.pth`` and ``decoder.pth``
(as `convert.pth_reader.read_state_dict` returns them) to the named layers of
`adain_jax.model.architecture`, OIHW -> HWIO. Any deviation from the official layout (a missing,
foreign, mis-shaped, non-float32 or non-finite tensor, or the two files swapped) raises
`WeightFileError` naming the file and the tensor.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from adain_jax.model import architecture
from adain_jax.model.variants import Weights
from convert.pth_reader import WeightFileError


def _layer_from_torch(path, state_dict: Mapping[str, np.ndarray], spec: architecture.ConvSpec) -> dict:
    """One conv layer's kernel (OIHW -> HWIO) and bias, with the checks the converter promises."""
    out = {}
    for suffix, expected in (("weight", spec.torch_weight_shape), ("bias", (spec.out_channels,))):
        key = f"{spec.torch_index}.{suffix}"
        if key not in state_dict:
            raise WeightFileError(path, f"missing (expected {suffix} of {spec.name}, shape {expected}); "
                                        "not the official layout", tensor=key)
        value = state_dict[key]
        if value.dtype != np.float32:
            raise WeightFileError(path, f"dtype {value.dtype}, expected float32", tensor=key)
        if tuple(value.shape) != expected:
            raise WeightFileError(path, f"shape {tuple(value.shape)}, expected {expected} ({spec.name}); "
                                        "not the official layout", tensor=key)
        if not np.all(np.isfinite(value)):
            raise WeightFileError(path, "contains NaN or infinite values", tensor=key)
        out[suffix] = value
    return {"kernel": np.ascontiguousarray(out["weight"].transpose(2, 3, 1, 0)), "bias": out["bias"]}


def _layout_keys(specs) -> set[str]:
    return {f"{s.torch_index}.{p}" for s in specs for p in ("weight", "bias")}


def _network_from_torch(path, state_dict, specs, tail=(), *, other=None) -> dict:
    """``other`` = (name, specs) of the other official file, to recognise the two being swapped."""
    if other is not None and set(state_dict) == _layout_keys(other[1]):
        raise WeightFileError(path, f"this is the official {other[0]} layout; were --vgg and --decoder swapped?")
    unexpected = [k for k in state_dict if k not in _layout_keys((*specs, *tail))]
    if unexpected:
        raise WeightFileError(path, "not in the official layout (wrong file, or a different network?)",
                              tensor=unexpected[0])
    return {spec.name: _layer_from_torch(path, state_dict, spec) for spec in specs}


def weights_from_torch(vgg_path, vgg_state: Mapping[str, np.ndarray], decoder_path,
                       decoder_state: Mapping[str, np.ndarray], *, full_vgg: bool = False) -> Weights:
    """Map the official state dicts (as read by `read_state_dict`) to the weights pytree.

    The VGG file's tail (relu4_2..relu5_4) is validated and dropped unless ``full_vgg``; `stylize`
    and training only use the encoder up to relu4_1. Raises WeightFileError naming file and tensor.
    """
    encoder_specs = architecture.ENCODER + (architecture.VGG_TAIL if full_vgg else ())
    vgg_specs = architecture.ENCODER + architecture.VGG_TAIL
    encoder = _network_from_torch(vgg_path, vgg_state, encoder_specs, tail=architecture.VGG_TAIL,
                                  other=("decoder.pth", architecture.DECODER))
    if not full_vgg:  # still reject a malformed tail: it means the file is not what it claims to be
        for spec in architecture.VGG_TAIL:
            if f"{spec.torch_index}.weight" in vgg_state:
                _layer_from_torch(vgg_path, vgg_state, spec)
    decoder = _network_from_torch(decoder_path, decoder_state, architecture.DECODER,
                                  other=("vgg_normalised.pth", vgg_specs))
    return {"encoder": encoder, "decoder": decoder}

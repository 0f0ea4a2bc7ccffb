"""convert.torch_layout: the official PyTorch layout mapped to named layers, with every check."""

import numpy as np
import pytest

from adain_jax.model import architecture
from convert.pth_reader import WeightFileError
from convert.torch_layout import weights_from_torch


def official_numpy_state_dicts(seed=0):
    rng = np.random.default_rng(seed)

    def sd(specs):
        out = {}
        for s in specs:
            out[f"{s.torch_index}.weight"] = rng.normal(size=s.torch_weight_shape).astype(np.float32)
            out[f"{s.torch_index}.bias"] = rng.normal(size=(s.out_channels,)).astype(np.float32)
        return out

    return sd(architecture.ENCODER + architecture.VGG_TAIL), sd(architecture.DECODER)


def test_weights_from_torch_maps_indices_to_names_and_oihw_to_hwio():
    vgg, dec = official_numpy_state_dicts()
    w = weights_from_torch("v.pth", vgg, "d.pth", dec)
    np.testing.assert_array_equal(w["encoder"]["conv4_1"]["kernel"], vgg["29.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(w["decoder"]["conv1_1"]["bias"], dec["28.bias"])
    assert set(w["encoder"]) == {s.name for s in architecture.ENCODER}  # tail dropped by default
    full = weights_from_torch("v.pth", vgg, "d.pth", dec, full_vgg=True)
    assert "conv5_4" in full["encoder"]


@pytest.mark.parametrize("mutate,fragment,tensor", [
    (lambda v, d: v.pop("16.bias"), "missing", "16.bias"),
    (lambda v, d: v.update({"19.weight": v["19.weight"].astype(np.float16)}), "dtype float16", "19.weight"),
    (lambda v, d: v.update({"2.weight": v["2.weight"][:32]}), "shape (32, 3, 3, 3), expected (64, 3, 3, 3)", "2.weight"),
    (lambda v, d: v.update({"99.weight": v["2.weight"]}), "not in the official layout", "99.weight"),
    (lambda v, d: v["51.weight"].__setitem__((0, 0, 0, 0), np.inf), "NaN or infinite", "51.weight"),
    (lambda v, d: d.update({"28.weight": d["28.weight"].astype(np.float64)}), "dtype float64", "28.weight"),
])
def test_layout_problems_name_the_file_and_the_tensor(mutate, fragment, tensor):
    vgg, dec = official_numpy_state_dicts()
    mutate(vgg, dec)
    with pytest.raises(WeightFileError) as excinfo:
        weights_from_torch("v.pth", vgg, "d.pth", dec)
    msg = str(excinfo.value)
    assert fragment in msg and tensor in msg and ("v.pth" in msg or "d.pth" in msg)

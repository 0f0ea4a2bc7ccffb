"""The PyTorch side: tests/torch_reference.py (the parity reference, i.e. the port's own module
layout and functions) run as the port's users would, in four modes:

* ``eager``: NCHW, as test.py / train.py run it;
* ``channels_last``: the same modules and inputs in ``torch.channels_last`` (oneDNN's preferred
  layout on CPU);
* ``compile``: ``torch.compile`` (default mode) applied to the two networks - or, for training, to
  the forward loss, with the backward compiled by AOTAutograd. New image sizes are left to
  torch.compile's automatic dynamic-shape handling (at most one more compilation);
* ``bf16``: channels_last under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (convolutions in
  bfloat16 through oneDNN, AMX where the CPU has it; float32 weights, as a user of the port would
  switch it on). Outputs are returned as float32, like adain-jax's bfloat16 path; training runs the
  forward loss under autocast and the backward and Adam update outside it, as PyTorch recommends.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from benchmarks.fixtures import _reference

ref = _reference()
MODES = ("eager", "channels_last", "compile", "bf16")
# The compute precision of each mode (adain_jax.precision's names): which adain-jax side it is compared with.
PRECISION = {"bf16": "bfloat16"}


def precision_of(mode: str) -> str:
    return PRECISION.get(mode, "float32")


def _adain_with_moments(content_feat, style_mean, style_std):
    # function.py's adaptive_instance_normalization with the style's statistics precomputed.
    size = content_feat.size()
    c_mean, c_std = ref.calc_mean_std(content_feat)
    normalized = (content_feat - c_mean.expand(size)) / c_std.expand(size)
    return normalized * style_std.expand(size) + style_mean.expand(size)


def _state_dict(sd: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


class TorchSide:
    def __init__(self, vgg_sd: dict, dec_sd: dict, mode: str):
        if mode not in MODES:
            raise ValueError(f"unknown PyTorch mode {mode!r}; expected one of {MODES}")
        self.mode = self.name = mode
        self.precision = precision_of(mode)
        self._sds = (_state_dict(vgg_sd), _state_dict(dec_sd))
        vgg, dec = self._networks()
        if mode == "compile":
            vgg, dec = torch.compile(vgg), torch.compile(dec)
        self.vgg, self.dec = vgg, dec

    def _networks(self):
        vgg, dec = ref.load_networks(*self._sds)
        if self.mode in ("channels_last", "bf16"):
            vgg = vgg.to(memory_format=torch.channels_last)
            dec = dec.to(memory_format=torch.channels_last)
        return vgg, dec

    def inputs(self, x: np.ndarray):
        t = ref.nhwc_to_nchw(x)
        return t.contiguous(memory_format=torch.channels_last) if self.mode in ("channels_last", "bf16") else t

    def _autocast(self):
        if self.mode == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def stylize(self, content, style):
        # test.py's style_transfer, plus the clamp that save_image applies (adain-jax clips too).
        with self._autocast():
            out = ref.style_transfer(self.vgg, self.dec, content, style).clamp_(0.0, 1.0)
        return out.float()

    @torch.inference_mode()
    def style_moments(self, style):
        with self._autocast():
            return ref.calc_mean_std(self.vgg(style))

    @torch.inference_mode()
    def stylize_with_moments(self, content, moments):
        with self._autocast():
            out = self.dec(_adain_with_moments(self.vgg(content), *moments)).clamp_(0.0, 1.0)
        return out.float()

    def to_numpy(self, out) -> np.ndarray:
        return ref.nchw_to_nhwc(out)

    def train_step(self):
        """net.py's Net.forward with train.py's loss weights, backward, Adam(lr 1e-4) on the decoder."""
        vgg, dec = self._networks()
        for p in dec.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(dec.parameters(), lr=1e-4)
        objective = ref.training_objective(vgg, dec, content_weight=1.0, style_weight=10.0)

        def forward(content, style):
            with self._autocast():
                return objective(content, style)[0]

        if self.mode == "compile":
            forward = torch.compile(forward)

        def run(content, style) -> float:
            opt.zero_grad(set_to_none=True)
            loss = forward(content, style)
            loss.backward()
            opt.step()
            return float(loss.detach())

        return run

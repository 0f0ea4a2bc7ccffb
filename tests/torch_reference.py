"""Independent PyTorch reference of AdaIN, numerically identical to the PyTorch port (test-only).

This module is the parity target for the JAX library. It re-implements, from the public source of
``naoto0804/pytorch-AdaIN`` (``net.py``, ``function.py``, ``test.py``, ``train.py``), exactly the
numerics of that port:

* ``make_vgg`` / ``make_decoder``: the port's ``net.vgg`` (53 modules) and ``net.decoder``
  (29 modules) ``nn.Sequential`` layouts, so that the official state dicts load with strict key
  matching; ``load_networks`` truncates vgg to its first 31 modules (relu4_1) as test.py does.
* ``calc_mean_std``, ``adaptive_instance_normalization``, ``coral``: function.py.
* ``style_transfer``: test.py's function of the same name (alpha blend, style interpolation).
* ``masked_style_transfer``: the ``-mask`` spatial control of the Lua original
  (xunhuang1995/AdaIN-style ``test.lua``), which the port lacks, computed with the port's
  statistics.
* ``training_objective`` / ``reference_loss_and_grads``: net.py's ``Net.forward`` training
  objective with train.py's loss weighting, and the gradients with respect to the decoder
  parameters; ``float32_rounding_noise`` perturbs a float64 run the way float32 rounding would, to
  size the tolerances of gradient tests on every CPU.
* ``official_state_dicts`` / ``save_official_files``: seeded random weights in the exact layout of
  the official ``vgg_normalised.pth`` / ``decoder.pth``, scaled so that activations stay O(1) and
  the decoded image lies mostly inside (0, 1) (otherwise clipped comparisons would be vacuous).
* ``reference_stylize``: a wrapper with the JAX library's ``stylize`` conventions (NHWC float32
  numpy in [0, 1]) returning both the raw decoder output and the clipped image; ``make_images``
  makes deterministic structured test images.

Every network can also be built in float64 (``load_networks(..., dtype=torch.float64)``) to measure
the float32 reference's own rounding error, which sizes the tolerances of the parity tests.

torch is never a runtime dependency of ``adain_jax``; nothing here imports the library either, so
the reference stays independent of the code it checks.

Longer than 400 lines on purpose: it is the one file a reviewer reads side by side with the port's
net.py, function.py, test.py and train.py, so the port's numerics are kept together here.
"""

from __future__ import annotations

import collections
import contextlib
import os
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Module counts of the port's nn.Sequential definitions (net.py) and the truncation test.py and
# train.py apply to vgg: `nn.Sequential(*list(vgg.children())[:31])` keeps up to relu4_1.
VGG_MODULES = 53
DECODER_MODULES = 29
RELU4_1_END = 31

# net.py's Net.__init__ splits of the truncated vgg: relu1_1, relu2_1, relu3_1, relu4_1.
ENCODER_SPLITS = ((0, 4), (4, 11), (11, 18), (18, 31))


def encode_with_intermediate(vgg, x: torch.Tensor) -> list[torch.Tensor]:
    """net.py's encode_with_intermediate on the truncated vgg: relu1_1 .. relu4_1 (NCHW)."""
    layers = list(vgg.children())
    feats = []
    for a, b in ENCODER_SPLITS:
        for layer in layers[a:b]:
            x = layer(x)
        feats.append(x)
    return feats


# Indices of the convolutions in the official files (SOURCES.md / adain_jax/model/architecture.py).
VGG_CONV_INDICES = (0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
DECODER_CONV_INDICES = (1, 5, 8, 11, 14, 18, 21, 25, 28)

# Caffe ImageNet BGR means: the real conv0 subtracts them after scaling RGB [0, 1] to BGR [0, 255].
_BGR_MEAN = (103.939, 116.779, 123.68)


# --------------------------------------------------------------------------------------------------
# Networks (net.py)
# --------------------------------------------------------------------------------------------------


def _pad_conv_relu(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
    # Every 3x3 conv of the port is preceded by a 1-pixel reflection pad (no zero padding).
    mods: list[nn.Module] = [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3))]
    if relu:
        mods.append(nn.ReLU())
    return mods


def _pool() -> nn.Module:
    # net.py: nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True) -- ceil mode is why feature maps
    # are ceil(H / 8) high and why the decoded image can be larger than the content image.
    return nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)


def make_vgg() -> nn.Sequential:
    """net.py's ``vgg``: conv0 1x1, then normalised VGG-19 through relu5_4 (53 modules)."""
    mods: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    mods += _pad_conv_relu(3, 64)  # relu1_1
    mods += _pad_conv_relu(64, 64)  # relu1_2
    mods.append(_pool())
    mods += _pad_conv_relu(64, 128)  # relu2_1
    mods += _pad_conv_relu(128, 128)  # relu2_2
    mods.append(_pool())
    mods += _pad_conv_relu(128, 256)  # relu3_1
    for _ in range(3):  # relu3_2 .. relu3_4
        mods += _pad_conv_relu(256, 256)
    mods.append(_pool())
    mods += _pad_conv_relu(256, 512)  # relu4_1: module 30, the last one AdaIN uses
    for _ in range(3):  # relu4_2 .. relu4_4
        mods += _pad_conv_relu(512, 512)
    mods.append(_pool())
    for _ in range(4):  # relu5_1 .. relu5_4
        mods += _pad_conv_relu(512, 512)
    seq = nn.Sequential(*mods)
    assert len(seq) == VGG_MODULES, len(seq)
    return seq


def make_decoder() -> nn.Sequential:
    """net.py's ``decoder`` (29 modules): mirror of vgg up to relu4_1, no final activation."""

    def up() -> nn.Module:
        # Current net.py: nn.Upsample(scale_factor=2, mode='nearest') (older revisions used the
        # equivalent nn.UpsamplingNearest2d(scale_factor=2)).
        return nn.Upsample(scale_factor=2, mode="nearest")

    mods: list[nn.Module] = []
    mods += _pad_conv_relu(512, 256)
    mods.append(up())
    for _ in range(3):
        mods += _pad_conv_relu(256, 256)
    mods += _pad_conv_relu(256, 128)
    mods.append(up())
    mods += _pad_conv_relu(128, 128)
    mods += _pad_conv_relu(128, 64)
    mods.append(up())
    mods += _pad_conv_relu(64, 64)
    mods += _pad_conv_relu(64, 3, relu=False)  # module 28, the output: no ReLU, no sigmoid
    seq = nn.Sequential(*mods)
    assert len(seq) == DECODER_MODULES, len(seq)
    return seq


def _as_state_dict(obj) -> "collections.OrderedDict[str, torch.Tensor]":
    if isinstance(obj, (str, os.PathLike)):
        # test.py: `vgg.load_state_dict(torch.load(args.vgg))`. weights_only=True is the torch>=2.6
        # default and reads both the legacy and the zip serialisation of a plain state dict.
        return torch.load(os.fspath(obj), map_location="cpu", weights_only=True)
    return obj


def load_networks(vgg_sd, decoder_sd, dtype: torch.dtype = torch.float32):
    """Build the port's networks and load the weights like test.py does.

    ``vgg_sd`` / ``decoder_sd`` are state dicts or paths of ``.pth`` files. Strict key matching
    (``load_state_dict`` default) proves the layout: a missing or extra tensor raises. Returns
    ``(vgg, decoder)`` with vgg truncated to relu4_1 (test.py: ``list(vgg.children())[:31]``), both
    in eval mode, on CPU, in ``dtype`` (float64 is for estimating the float32 reference's own error).
    """
    vgg = make_vgg()
    decoder = make_decoder()
    vgg.load_state_dict(_as_state_dict(vgg_sd), strict=True)
    decoder.load_state_dict(_as_state_dict(decoder_sd), strict=True)
    vgg = nn.Sequential(*list(vgg.children())[:RELU4_1_END])
    vgg.eval()
    decoder.eval()
    for p in list(vgg.parameters()) + list(decoder.parameters()):
        p.requires_grad_(False)
    return vgg.to(dtype), decoder.to(dtype)


# --------------------------------------------------------------------------------------------------
# function.py
# --------------------------------------------------------------------------------------------------


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5):
    """function.py: per-(N, C) mean and sqrt(unbiased variance + eps) over the spatial positions."""
    size = feat.size()
    assert len(size) == 4
    n, c = size[:2]
    # Tensor.var defaults to the unbiased (N - 1) estimator; eps is added to the *variance*.
    feat_var = feat.reshape(n, c, -1).var(dim=2) + eps
    feat_std = feat_var.sqrt().view(n, c, 1, 1)
    feat_mean = feat.reshape(n, c, -1).mean(dim=2).view(n, c, 1, 1)
    return feat_mean, feat_std


def adaptive_instance_normalization(content_feat: torch.Tensor, style_feat: torch.Tensor):
    """function.py: normalise content per channel, then rescale to the style's mean and std."""
    assert content_feat.size()[:2] == style_feat.size()[:2]
    size = content_feat.size()
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = calc_mean_std(content_feat)
    normalized_feat = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    return normalized_feat * style_std.expand(size) + style_mean.expand(size)


def _calc_feat_flatten_mean_std(feat: torch.Tensor):
    # function.py: (3, H, W) -> (3, H*W), per-channel mean and *unbiased* std (Tensor.std default).
    assert feat.size()[0] == 3
    feat_flatten = feat.reshape(3, -1)
    mean = feat_flatten.mean(dim=-1, keepdim=True)
    std = feat_flatten.std(dim=-1, keepdim=True)
    return feat_flatten, mean, std


def _mat_sqrt(x: torch.Tensor) -> torch.Tensor:
    # function.py: U diag(sqrt(D)) V^T with torch.svd, which returns V (not V^T). The input is
    # symmetric positive definite, so this is its principal square root.
    u, d, v = torch.svd(x)
    return torch.mm(torch.mm(u, d.pow(0.5).diag()), v.t())


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """function.py: recolour ``source`` (3, H, W) to the colour statistics of ``target``.

    Faithful to the port, including its quirks: the "covariance" is the *unnormalised* Gram matrix
    of the standardised pixels (not divided by the pixel count) plus the 3x3 identity, and the
    inverse square root is ``torch.inverse`` of the SVD square root.
    """
    eye = torch.eye(3, dtype=source.dtype)
    source_f, source_f_mean, source_f_std = _calc_feat_flatten_mean_std(source)
    source_f_norm = (source_f - source_f_mean.expand_as(source_f)) / source_f_std.expand_as(source_f)
    source_f_cov_eye = torch.mm(source_f_norm, source_f_norm.t()) + eye

    target_f, target_f_mean, target_f_std = _calc_feat_flatten_mean_std(target)
    target_f_norm = (target_f - target_f_mean.expand_as(target_f)) / target_f_std.expand_as(target_f)
    target_f_cov_eye = torch.mm(target_f_norm, target_f_norm.t()) + eye

    source_f_norm_transfer = torch.mm(
        _mat_sqrt(target_f_cov_eye),
        torch.mm(torch.inverse(_mat_sqrt(source_f_cov_eye)), source_f_norm),
    )
    source_f_transfer = source_f_norm_transfer * target_f_std.expand_as(
        source_f_norm
    ) + target_f_mean.expand_as(source_f_norm)
    return source_f_transfer.view(source.size())


# --------------------------------------------------------------------------------------------------
# test.py and test.lua
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def style_transfer(vgg, decoder, content, style, alpha=1.0, interpolation_weights=None):
    """test.py's ``style_transfer`` (NCHW tensors).

    Without weights: content (N, ...) and style (N, ...) are paired one to one. With
    ``interpolation_weights`` (K weights, test.py normalises them to sum 1 before the call):
    content is the same image repeated K times (test.py: ``.unsqueeze(0).expand_as(style)``), style
    holds the K styles, and the result is one image.
    """
    assert 0.0 <= alpha <= 1.0
    content_f = vgg(content)
    style_f = vgg(style)
    if interpolation_weights:
        _, c, h, w = content_f.size()
        # test.py: feat = zeros(1, C, H, W); feat = feat + w * base_feat[i:i + 1], in this order.
        feat = torch.zeros(1, c, h, w, dtype=content_f.dtype)
        base_feat = adaptive_instance_normalization(content_f, style_f)
        for i, wt in enumerate(interpolation_weights):
            feat = feat + wt * base_feat[i : i + 1]
        content_f = content_f[0:1]
    else:
        feat = adaptive_instance_normalization(content_f, style_f)
    feat = feat * alpha + content_f * (1 - alpha)
    return decoder(feat)


def downsample_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(H, W) mask -> (h, w) by "nearest with pixel centres": source = floor((i + 0.5) * in / out).

    test.lua uses image.scale(mask, W, H, 'simple'); the project fixes the convention to the
    pixel-centre rule, which is exactly F.interpolate(mode='nearest-exact').
    """
    return F.interpolate(mask[None, None], size=(h, w), mode="nearest-exact")[0, 0]


@torch.no_grad()
def masked_style_transfer(vgg, decoder, content, styles, mask, alpha=1.0):
    """test.lua's ``-mask`` spatial control, with the port's statistics (NCHW tensors).

    content: (1, 3, H, W); styles: (2, 3, Hs, Ws) -- style 1 for mask == 1 (foreground), style 2
    for mask == 0 (background); mask: (H, W) binary, at content resolution.
    """
    assert 0.0 <= alpha <= 1.0
    assert content.shape[0] == 1 and styles.shape[0] == 2
    # test.lua: styleFeature = vgg:forward(style); contentFeature = vgg:forward(content)
    style_f = vgg(styles)
    content_f = vgg(content)[0]  # (C, h, w)
    c, h, w = content_f.shape
    mask_view = downsample_mask(mask.to(content_f.dtype), h, w).reshape(-1)
    # test.lua: torch.find(maskView, 1) / torch.find(maskView, 0) -- exact equality, so a
    # non-binary value would belong to neither region (we assert binary instead).
    fg = torch.nonzero(mask_view == 1).flatten()
    bg = torch.nonzero(mask_view == 0).flatten()
    assert fg.numel() + bg.numel() == h * w, "mask must be binary"
    assert fg.numel() >= 2 and bg.numel() >= 2, "both regions need >= 2 feature positions"
    content_view = content_f.reshape(c, -1)
    # contentFeatureView:index(2, fgmask):view(C, #fg, 1): each region becomes a C x n x 1 "image"
    # whose statistics are the region's own; the style side uses its *whole* image's statistics.
    content_fg = content_view.index_select(1, fg).view(1, c, fg.numel(), 1)
    content_bg = content_view.index_select(1, bg).view(1, c, bg.numel(), 1)
    target_fg = adaptive_instance_normalization(content_fg, style_f[0:1]).view(c, -1)
    target_bg = adaptive_instance_normalization(content_bg, style_f[1:2]).view(c, -1)
    # targetFeature = zeros; indexCopy(2, fgmask, FG); indexCopy(2, bgmask, BG)
    target = torch.zeros_like(content_view)
    target.index_copy_(1, fg, target_fg)
    target.index_copy_(1, bg, target_bg)
    target = target.view(1, c, h, w)
    # test.lua: targetFeature = alpha * targetFeature + (1 - alpha) * contentFeature
    feat = target * alpha + content_f[None] * (1 - alpha)
    return decoder(feat)


# --------------------------------------------------------------------------------------------------
# net.py Net.forward + train.py loss weighting
# --------------------------------------------------------------------------------------------------


def training_objective(vgg, decoder, *, content_weight: float = 1.0, style_weight: float = 10.0,
                       alpha: float = 1.0):
    """net.py's ``Net.forward`` with train.py's loss weighting, as one function of NCHW tensors.

    ``vgg``: the truncated encoder from `load_networks`; ``decoder``: the decoder. Returns
    ``objective(content, style) -> (loss, loss_c, loss_s)`` with loss = content_weight * loss_c +
    style_weight * loss_s (train.py) and loss_c / loss_s unweighted as ``Net.forward`` returns them.
    Gradients reach whatever parameters of ``decoder`` require them (train.py optimises
    ``network.decoder.parameters()`` only); used by `reference_loss_and_grads` and by the timed
    PyTorch training step of benchmarks/torch_side.py.
    """
    layers = list(vgg.children())
    encs = [nn.Sequential(*layers[a:b]) for a, b in ENCODER_SPLITS]

    def encode_with_intermediate(x):
        feats = []
        for enc in encs:
            x = enc(x)
            feats.append(x)
        return feats

    def calc_style_loss(inp, target):
        im, istd = calc_mean_std(inp)
        tm, tstd = calc_mean_std(target)
        return F.mse_loss(im, tm) + F.mse_loss(istd, tstd)  # nn.MSELoss(): mean reduction

    def objective(content: torch.Tensor, style: torch.Tensor):
        # Net.forward (current net.py): encoder params frozen, inputs need no grad, so t and the
        # style features are constants and gradients reach only the decoder.
        style_feats = encode_with_intermediate(style)
        content_feat = encode_with_intermediate(content)[-1]
        t = adaptive_instance_normalization(content_feat, style_feats[-1])
        t = alpha * t + (1 - alpha) * content_feat
        g_t_feats = encode_with_intermediate(decoder(t))
        loss_c = F.mse_loss(g_t_feats[-1], t)
        loss_s = calc_style_loss(g_t_feats[0], style_feats[0])
        for i in range(1, 4):
            loss_s = loss_s + calc_style_loss(g_t_feats[i], style_feats[i])
        return content_weight * loss_c + style_weight * loss_s, loss_c, loss_s

    return objective


def reference_loss_and_grads(
    vgg_sd,
    dec_sd,
    content: np.ndarray,
    style: np.ndarray,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    alpha: float = 1.0,
    dtype: torch.dtype = torch.float32,
    rounding_noise_seeds: Sequence[int] = (),
):
    """The port's training objective and its decoder gradients.

    content, style: NHWC numpy in [0, 1], same batch size (train.py draws one style per content).
    Returns ``(loss, loss_c, loss_s, grads)``: loss = content_weight * loss_c + style_weight *
    loss_s (train.py), loss_c / loss_s unweighted as ``Net.forward`` returns them, and ``grads``
    {decoder state-dict key: gradient ndarray (OIHW / bias)} of ``loss``. Pass ``dtype=float64``
    to get a near-exact value to size tolerances against.

    With ``rounding_noise_seeds`` (float64 only), returns a list with one such tuple per seed
    instead, each computed with `float32_rounding_noise` on every convolution: an ensemble whose
    spread around the plain float64 result is what float32 rounding can do to this case.
    """
    vgg, decoder = load_networks(vgg_sd, dec_sd, dtype=dtype)
    for p in decoder.parameters():
        p.requires_grad_(True)  # train.py optimises network.decoder.parameters() only
    objective = training_objective(vgg, decoder, content_weight=content_weight,
                                   style_weight=style_weight, alpha=alpha)
    c = nhwc_to_nchw(content, dtype)
    s = nhwc_to_nchw(style, dtype)

    def run():
        decoder.zero_grad(set_to_none=True)
        loss, loss_c, loss_s = objective(c, s)
        loss.backward()
        grads = collections.OrderedDict(
            (k, p.grad.detach().cpu().numpy().copy()) for k, p in decoder.named_parameters()
        )
        return loss.item(), loss_c.item(), loss_s.item(), grads

    if not rounding_noise_seeds:
        return run()
    assert dtype == torch.float64, "the rounding model needs a float64 computation to perturb"
    out = []
    for seed in rounding_noise_seeds:
        with float32_rounding_noise([vgg, decoder], seed):
            out.append(run())
    return out


# --------------------------------------------------------------------------------------------------
# A model of float32 rounding, computed in float64 (sizes the tolerances of gradient tests)
# --------------------------------------------------------------------------------------------------

FLOAT32_EPS = float(np.finfo(np.float32).eps)


@contextlib.contextmanager
def float32_rounding_noise(networks, seed: int):
    """Perturb every ``nn.Conv2d`` output of ``networks`` (float64) like float32 rounding would.

    A float32 convolution output y = b + sum_i w_i x_i carries a rounding error of the order of
    eps32 * S with S = |b| + sum_i |w_i| |x_i| (the terms' magnitudes; measured on CPU kernels the
    error's RMS is 0.2-0.6 of that and its maximum over 1e5 outputs 1-3 times it). Each output
    gets eps32 * S * N(0, 1) added here, drawn from a seeded numpy generator, so the perturbation
    is the same on every machine; errors of earlier layers propagate as they do in float32. Unlike
    a fixed tolerance, an ensemble of such runs sees what float32 rounding can do to *this* case,
    including ReLU units and max-pool windows whose decision flips (a unit within rounding distance
    of 0 routes the gradient differently, which moves gradients by 1e-4..1e-3 of their range).
    The backward pass is not perturbed: its rounding is smooth and far smaller.
    """
    rng = np.random.default_rng(seed)

    def hook(module, inputs, output):
        (x,) = inputs
        with torch.no_grad():
            scale = F.conv2d(x.abs(), module.weight.abs(), module.bias.abs(), module.stride,
                             module.padding, module.dilation, module.groups)
            noise = torch.from_numpy(rng.standard_normal(tuple(output.shape)))
        return output + (FLOAT32_EPS * scale * noise).to(output.dtype)

    handles = [m.register_forward_hook(hook) for net in networks for m in net.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------------------
# Seeded random weights in the official layout
# --------------------------------------------------------------------------------------------------

# Scales, chosen so that random-weight activations stay O(1) and the image stays mostly in (0, 1):
# * conv0 mimics the real one: RGB [0, 1] -> BGR [0, 255] (a channel flip times 255) minus the
#   Caffe means, here with N(0, 8^2) noise on the weights and N(0, 2^2) on the biases so that the
#   flip is not exactly a permutation.
# * conv1_1 sees mean-subtracted [0, 255] values (RMS ~30 for mid-grey test images), so its He std
#   sqrt(2 / fan_in) is divided by CONV1_1_INPUT_RMS to bring its output back to O(1).
# * every other conv but the decoder's last: He std sqrt(2 / fan_in), which keeps the second moment
#   of a ReLU network roughly constant; biases N(0, 0.05^2). Measured on make_images inputs: ReLU
#   outputs have RMS 0.9-2.8 throughout both networks.
# * decoder output conv (module 28): its input is a ReLU output with a large positive mean, so any
#   fixed random scale leaves each colour channel with a random offset of several tenths (seeds
#   with 35% of the pixels inside (0, 1) were common). It is therefore calibrated on a probe batch
#   (data-dependent init): per output channel, weights scaled to give a spread of OUT_STD and the
#   bias set to put the mean at 0.5 (plus N(0, 0.05^2)). That leaves 94-98% of the values strictly
#   inside (0, 1) -- and a few outside, so clipping is exercised too.
CONV1_1_INPUT_RMS = 30.0
BIAS_STD = 0.05
OUT_STD = 0.2


def _vgg_specs():
    cin = 3
    specs = []
    for idx in VGG_CONV_INDICES:
        if idx == 0:
            specs.append((idx, 3, 3, 1))
            continue
        cout = {2: 64, 5: 64, 9: 128, 12: 128}.get(idx, 256 if idx < 29 else 512)
        specs.append((idx, cout, cin, 3))
        cin = cout
    return specs


def _decoder_specs():
    chans = [(512, 256), (256, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64),
             (64, 64), (64, 3)]
    return [(idx, cout, cin, 3) for idx, (cin, cout) in zip(DECODER_CONV_INDICES, chans)]


def official_state_dicts(seed: int):
    """Seeded random ``(vgg_sd, decoder_sd)`` with the official keys, shapes, order and dtype.

    OrderedDicts of contiguous float32 CPU tensors: 34 vgg tensors (including the relu4_2..relu5_4
    tail AdaIN never uses) and 18 decoder tensors. numpy's PCG64 generator makes the values
    independent of the torch version.
    """
    rng = np.random.default_rng(seed)

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape, dtype=np.float64)).astype(np.float32)

    vgg_sd = collections.OrderedDict()
    for idx, cout, cin, k in _vgg_specs():
        if idx == 0:
            flip = np.zeros((3, 3), np.float64)
            flip[0, 2] = flip[1, 1] = flip[2, 0] = 255.0  # out B <- in R, ... (RGB -> BGR)
            w = (flip + normal((3, 3), 8.0)).astype(np.float32).reshape(3, 3, 1, 1)
            b = (-np.asarray(_BGR_MEAN) + normal((3,), 2.0)).astype(np.float32)
        else:
            fan_in = cin * k * k
            std = np.sqrt(2.0 / fan_in)
            if idx == 2:
                std /= CONV1_1_INPUT_RMS
            w = normal((cout, cin, k, k), std)
            b = normal((cout,), BIAS_STD)
        vgg_sd[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        vgg_sd[f"{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(b))

    dec_sd = collections.OrderedDict()
    for idx, cout, cin, k in _decoder_specs():
        fan_in = cin * k * k
        if idx == DECODER_CONV_INDICES[-1]:
            w = normal((cout, cin, k, k), 1.0 / np.sqrt(fan_in))  # rescaled by _calibrate_output
            b = np.zeros((cout,), np.float32)
        else:
            w = normal((cout, cin, k, k), np.sqrt(2.0 / fan_in))
            b = normal((cout,), BIAS_STD)
        dec_sd[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        dec_sd[f"{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    _calibrate_output(vgg_sd, dec_sd, seed, normal((3,), BIAS_STD))
    assert len(vgg_sd) == 34 and len(dec_sd) == 18
    return vgg_sd, dec_sd


def _calibrate_output(vgg_sd, dec_sd, seed: int, bias_noise: np.ndarray) -> None:
    """Rescale the decoder's output conv in place: per channel, spread OUT_STD around 0.5.

    Probe: AdaIN of two seeded 64x64 images onto two others, in float64 (so the result does not
    depend on float32 summation order), decoded up to the last conv's input.
    """
    key_w, key_b = f"{DECODER_CONV_INDICES[-1]}.weight", f"{DECODER_CONV_INDICES[-1]}.bias"
    vgg, decoder = load_networks(vgg_sd, dec_sd, dtype=torch.float64)
    content = nhwc_to_nchw(make_images(seed + 101, 2, 64, 64), torch.float64)
    style = nhwc_to_nchw(make_images(seed + 102, 2, 64, 64), torch.float64)
    with torch.no_grad():
        h = adaptive_instance_normalization(vgg(content), vgg(style))
        h = decoder[:-1](h)  # up to the reflection pad before module 28
        w = dec_sd[key_w].to(torch.float64)
        y = F.conv2d(h, w)  # (N, 3, H, W) without bias
    mean = y.mean(dim=(0, 2, 3)).numpy()
    std = y.std(dim=(0, 2, 3)).numpy()
    scale = OUT_STD / std
    new_w = (w.numpy() * scale[:, None, None, None]).astype(np.float32)
    new_b = (0.5 - mean * scale + bias_noise).astype(np.float32)
    dec_sd[key_w] = torch.from_numpy(np.ascontiguousarray(new_w))
    dec_sd[key_b] = torch.from_numpy(np.ascontiguousarray(new_b))


def save_official_files(directory, seed: int, legacy: bool):
    """Write ``vgg_normalised.pth`` and ``decoder.pth`` for ``official_state_dicts(seed)``.

    ``legacy=True`` writes the pre-zip serialisation the real release files use; otherwise the
    default zip archive. Returns ``(vgg_path, decoder_path)``.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    vgg_sd, dec_sd = official_state_dicts(seed)
    vgg_path = os.path.join(directory, "vgg_normalised.pth")
    dec_path = os.path.join(directory, "decoder.pth")
    torch.save(vgg_sd, vgg_path, _use_new_zipfile_serialization=not legacy)
    torch.save(dec_sd, dec_path, _use_new_zipfile_serialization=not legacy)
    return vgg_path, dec_path


# --------------------------------------------------------------------------------------------------
# NHWC numpy convenience layer with the JAX library's `stylize` conventions
# --------------------------------------------------------------------------------------------------


def nhwc_to_nchw(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))).to(dtype)


def nchw_to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()


def reference_stylize(
    nets,
    content: np.ndarray,
    style: np.ndarray,
    *,
    alpha: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    masks: np.ndarray | None = None,
):
    """The reference for ``adain_jax.stylize`` with the same argument conventions.

    nets: ``(vgg, decoder)`` from ``load_networks``. content: (N, H, W, 3) in [0, 1]. style:
    (N or 1, Hs, Ws, 3) paired with the content images, or (K, Hs, Ws, 3) combined for every
    content image when ``style_weights`` (K,) or ``masks`` (N, H, W, K) is given. Only K = 2
    complementary binary masks are supported (the Lua original's case: masks[..., 0] selects
    style 0). Each content image is processed on its own, batch 1, as test.py does.

    Returns ``(raw, clipped)``, both (N, H, W, 3) float numpy in the networks' dtype: ``raw`` is the
    decoder output cropped to H x W (ceil-mode pooling makes it 8 * ceil(H / 8) high), ``clipped``
    is raw clipped to [0, 1] as torchvision's save_image does.
    """
    vgg, decoder = nets
    dtype = next(decoder.parameters()).dtype
    content = np.asarray(content)
    style = np.asarray(style)
    n, h, w, _ = content.shape
    if style_weights is None and masks is None:
        assert style.shape[0] in (1, n)
    outs = []
    for i in range(n):
        c = nhwc_to_nchw(content[i : i + 1], dtype)  # (1, 3, H, W)
        if style_weights is None and masks is None:
            styles = nhwc_to_nchw(style[i : i + 1] if style.shape[0] == n else style[:1], dtype)
        else:
            styles = nhwc_to_nchw(style, dtype)  # (K, 3, Hs, Ws)
        if preserve_color:
            # test.py / test.lua: `style = coral(style, content)` for every style image, in pixel
            # space, before encoding (the content image is left unchanged).
            styles = torch.stack([coral(s, c[0]) for s in styles])
        if masks is not None:
            m = np.asarray(masks)[i]
            assert m.shape == (h, w, 2), "the reference supports 2 complementary masks"
            assert np.all((m == 0) | (m == 1)) and np.all(m[..., 0] + m[..., 1] == 1)
            out = masked_style_transfer(
                vgg, decoder, c, styles, torch.from_numpy(np.ascontiguousarray(m[..., 0])), alpha
            )
        elif style_weights is not None:
            wts = [float(x) for x in style_weights]
            assert len(wts) == styles.shape[0]
            # test.py: `interpolation_weights = [w / sum(weights) for w in weights]`
            total = sum(wts)
            wts = [x / total for x in wts]
            # test.py repeats the content with `.expand_as(style)`, which needs equal sizes; the
            # library allows other style sizes, so repeat along the batch axis only (each batch
            # element is computed independently, so the numbers are the same).
            content_k = c.expand(styles.shape[0], -1, -1, -1)
            out = style_transfer(vgg, decoder, content_k, styles, alpha, interpolation_weights=wts)
        else:
            out = style_transfer(vgg, decoder, c, styles, alpha)
        outs.append(out[:, :, :h, :w])
    raw = nchw_to_nhwc(torch.cat(outs))
    return raw, np.clip(raw, 0.0, 1.0)


def make_images(seed: int, n: int, h: int, w: int) -> np.ndarray:
    """Deterministic smooth-ish random NHWC images in [0, 1] (structure at several scales)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, h, w, 3), np.float64)
    for scale in (4, 16, 64):
        gh, gw = max(2, -(-h // scale) + 1), max(2, -(-w // scale) + 1)
        grid = torch.from_numpy(rng.uniform(-1, 1, (n, 3, gh, gw)))
        up = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        out += up.permute(0, 2, 3, 1).numpy() / 3
    # A per-image colour cast makes colour statistics differ between images (matters for coral).
    out = 0.5 + 0.45 * out + rng.uniform(-0.15, 0.15, (n, 1, 1, 3))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


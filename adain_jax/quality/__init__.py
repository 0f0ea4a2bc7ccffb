"""Measuring style transfer without downloaded weights: `metrics` (losses on the converted VGG, SSIM,
colour histograms) and `gatys` (the optimisation baseline of Gatys et al., compiled).

Both sit above ``model`` (they reuse its encoder, moments and losses) and below ``cli``.
"""

"""Pictures of a trained generator: samples per seed, the style-mixing grid (the paper's Figure 3),
a truncation sweep and the effect of the noise inputs.

Seed conventions (NVlabs'): seed s gives ``z = RandomState(s).randn(latent_dim)`` and its noise from
``jax.random.key(s)``, drawn per image, so a seed gives the same picture in any batch, on any run.
Every picture is computed in fixed-size chunks (`BATCH`, the last one padded) through the jitted
`synthesis`, so one program serves every seed list, crossover and psi.

The sheets are `adain_jax.io.sheets.contact_sheet` arrays (write them with `save_image`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.io.sheets import contact_sheet
from adain_jax.stylegan import styles
from adain_jax.stylegan.config import GeneratorConfig, num_style_layers
from adain_jax.stylegan.mapping_network import mapping
from adain_jax.stylegan.synthesis_network import layer_resolution, synthesis

BATCH = 16
PSI_SWEEP = (1.0, 0.7, 0.5, 0.0, -0.5, -1.0)  # the paper's Figure 8


def seed_latents(cfg: GeneratorConfig, seeds: Sequence[int]) -> np.ndarray:
    """(len(seeds), latent_dim) float32 z, one RandomState(seed) draw each."""
    return np.stack([np.random.RandomState(int(s)).randn(cfg.latent_dim) for s in seeds]).astype(np.float32)


def seed_noise_keys(seeds: Sequence[int] | np.ndarray, draw: int | None = None) -> jax.Array:
    """One key per seed (or per seed and noise draw: ``fold_in(key(seed), draw)``)."""
    keys = jax.vmap(jax.random.key)(jnp.asarray(np.asarray(seeds, np.uint32)))
    return keys if draw is None else jax.vmap(lambda k: jax.random.fold_in(k, draw))(keys)


_mapping = jax.jit(mapping, static_argnames=("cfg",))


def seed_ws(g_params: dict, cfg: GeneratorConfig, seeds: Sequence[int]) -> jax.Array:
    """(len(seeds), L, latent_dim): each seed's w on every layer (mapped in fixed-size chunks)."""
    z = seed_latents(cfg, seeds)
    w = np.concatenate([np.asarray(_mapping(g_params, cfg, chunk))[:n] for chunk, n in _chunks(z)])
    return styles.broadcast_w(jnp.asarray(w), cfg)


def _chunks(array, batch: int = BATCH):
    """Fixed-size chunks of the leading axis (the last padded with copies of its first row), so one
    compiled program serves any number of seeds."""
    for start in range(0, array.shape[0], batch):
        chunk = array[start:start + batch]
        n = chunk.shape[0]
        if n < batch:
            chunk = jnp.concatenate([chunk, jnp.repeat(chunk[:1], batch - n, axis=0)])
        yield chunk, n


def render(g_params: dict, cfg: GeneratorConfig, ws: jax.Array, noise_keys: jax.Array) -> np.ndarray:
    """Images (N, R, R, channels) in [-1, 1]-ish for ws (N, L, D) and one noise key per image."""
    out = []
    for (ws_chunk, n), (key_chunk, _) in zip(_chunks(ws), _chunks(noise_keys), strict=True):
        out.append(np.asarray(synthesis(g_params, cfg, ws_chunk, key_chunk))[:n])
    return np.concatenate(out)


def to_display(images: np.ndarray) -> np.ndarray:
    """[-1, 1] NHWC (1 or 3 channels) -> [0, 1] RGB, clipped."""
    images = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def truncated(ws: jax.Array, w_avg, psi: float, cutoff: int) -> jax.Array:
    return ws if w_avg is None else styles.truncate(ws, jnp.asarray(w_avg), psi, cutoff)


def samples(g_params, cfg, seeds, *, w_avg=None, psi: float = 1.0, cutoff: int | None = None) -> np.ndarray:
    """One image per seed, [0, 1] RGB (N, R, R, 3), truncated with (psi, cutoff) when w_avg is given."""
    cutoff = num_style_layers(cfg) if cutoff is None else cutoff
    ws = truncated(seed_ws(g_params, cfg, seeds), w_avg, psi, cutoff)
    return to_display(render(g_params, cfg, ws, seed_noise_keys(seeds)))


def style_bands(cfg: GeneratorConfig) -> dict[str, tuple[int, int]]:
    """Layer ranges [start, stop) of the coarse, middle and fine styles.

    As the paper at 1024 px (coarse 4-8 px, middle 16-32 px, fine 64-1024 px) with fewer
    resolutions shared out in that order: at 16 px coarse = 4x4, middle = 8x8, fine = 16x16.
    """
    count = num_style_layers(cfg)
    n = count // 2
    if n == 2:
        return {"coarse": (0, 2), "middle": (2, 3), "fine": (3, 4)}
    coarse = min(2, n - 2)
    middle = min(2, n - 1 - coarse)
    a, b = 2 * coarse, 2 * (coarse + middle)
    return {"coarse": (0, a), "middle": (a, b), "fine": (b, count)}


def _band_label(band: str, span: tuple[int, int]) -> str:
    lo, hi = layer_resolution(span[0]), layer_resolution(span[1] - 1)
    return f"{band} ({lo}px)" if lo == hi else f"{band} ({lo}-{hi}px)"


def copy_styles(ws_a: jax.Array, ws_b: jax.Array, start, stop) -> jax.Array:
    """ws_a with layers [start, stop) taken from ws_b (two masks: traced bounds, no recompile)."""
    return styles.mix(ws_a, styles.mix(ws_b, ws_a, stop), start)


def mixing_grid(g_params, cfg, row_seeds, col_seeds, *, w_avg=None, psi: float = 1.0,
                cutoff: int | None = None, cell: int = 128, header: str | None = None) -> np.ndarray:
    """Figure 3: the column seeds (source B) across the top, the row seeds (source A) down the left;
    each cell is A with B's coarse, middle or fine styles copied in (one block of rows per band)."""
    cutoff = num_style_layers(cfg) if cutoff is None else cutoff
    ws_a = truncated(seed_ws(g_params, cfg, row_seeds), w_avg, psi, cutoff)
    ws_b = truncated(seed_ws(g_params, cfg, col_seeds), w_avg, psi, cutoff)
    img_a = to_display(render(g_params, cfg, ws_a, seed_noise_keys(row_seeds)))
    img_b = to_display(render(g_params, cfg, ws_b, seed_noise_keys(col_seeds)))
    na, nb = len(row_seeds), len(col_seeds)
    rows, row_labels = [[None, *img_b]], ["source B"]
    for band, (start, stop) in style_bands(cfg).items():
        # Every (A, B) pair in one batch: A repeated along B, B tiled along A; A's noise.
        pair_a = jnp.repeat(ws_a, nb, axis=0)
        pair_b = jnp.tile(ws_b, (na, 1, 1))
        mixed = copy_styles(pair_a, pair_b, start, stop)
        keys = seed_noise_keys(np.repeat(np.asarray(row_seeds), nb))
        images = to_display(render(g_params, cfg, mixed, keys)).reshape(na, nb, *img_a.shape[1:])
        for i, seed in enumerate(row_seeds):
            rows.append([img_a[i], *images[i]])
            row_labels.append(f"seed {seed} (source A) with the {_band_label(band, (start, stop))} styles of B")
    labels = ["A", *[f"B: seed {s}" for s in col_seeds]]
    return contact_sheet(rows, labels=labels, cell=cell, header=header or "style mixing", row_labels=row_labels)


def truncation_sweep(g_params, cfg, seeds, w_avg, *, psis: Sequence[float] = PSI_SWEEP,
                     cutoff: int | None = None, cell: int = 128, header: str | None = None) -> np.ndarray:
    """One row per seed, one column per psi (Figure 8); psi = 0 is the average-w image."""
    cutoff = num_style_layers(cfg) if cutoff is None else cutoff
    ws = seed_ws(g_params, cfg, seeds)
    keys = seed_noise_keys(seeds)
    columns = [to_display(render(g_params, cfg, styles.truncate(ws, jnp.asarray(w_avg), psi, cutoff), keys))
               for psi in psis]
    rows = [[col[i] for col in columns] for i in range(len(seeds))]
    return contact_sheet(rows, labels=[f"psi {p:g}" for p in psis], cell=cell,
                         header=header or f"truncation (cutoff {cutoff} of {num_style_layers(cfg)} layers)",
                         row_labels=[f"seed {s}" for s in seeds])


def noise_study(g_params, cfg, seeds, *, w_avg=None, psi: float = 1.0, cutoff: int | None = None,
                draws: int = 4, std_draws: int = 64, cell: int = 128, header: str | None = None) -> np.ndarray:
    """Figure 4: per seed, the same w with ``draws`` noise realisations, then the per-pixel standard
    deviation over ``std_draws`` realisations (mean over channels, shown relative to the largest
    std on the sheet, whose value the header gives)."""
    cutoff = num_style_layers(cfg) if cutoff is None else cutoff
    ws = truncated(seed_ws(g_params, cfg, seeds), w_avg, psi, cutoff)
    shown, stds = [], []
    for i, seed in enumerate(seeds):
        total = max(draws, std_draws)
        keys = jax.vmap(functools.partial(jax.random.fold_in, jax.random.key(int(seed))))(jnp.arange(1, total + 1))
        images = render(g_params, cfg, jnp.repeat(ws[i:i + 1], total, axis=0), keys)
        shown.append(to_display(images[:draws]))
        stds.append(np.std(images.astype(np.float64), axis=0).mean(axis=-1))  # (R, R)
    top = max(float(np.max(s)) for s in stds)
    rows = [[*shown[i], stds[i] / top if top > 0 else stds[i]] for i in range(len(seeds))]
    labels = [*[f"noise {d + 1}" for d in range(draws)], "per-pixel std"]
    note = f"same w, {draws} noise draws; std over {max(draws, std_draws)} draws, white = {top:.3g}"
    text = f"{header}: noise inputs: {note}" if header else f"noise inputs: {note}"
    return contact_sheet(rows, labels=labels, cell=cell, header=text,
                         row_labels=[f"seed {s}" for s in seeds])

"""Where `style_augment` takes its styles from: a bank of precomputed style moments, a Gaussian fitted
to a bank, or the batch itself.

Each source is a small frozen dataclass registered as a pytree, so it is passed into a jitted step as
an argument (its arrays replicated over a mesh) rather than baked into the program as a constant, and
each draws its styles from an explicit key (`draw`):

- `StyleBank`: relu4_1 mean and std of N style images, (N, 512) each: N x 1,024 floats, all a style
  is to AdaIN. Made from a folder (`StyleBank.from_folder`, or ``python -m adain_jax.augment bank``)
  and kept as a ``.npz`` written atomically.
- `GaussianStyles`: a multivariate normal over the 1,024-vector [mean, log std], fitted to a bank,
  so that new styles come without images, as Style Augmentation (Jackson et al., CVPR Workshops 2019)
  samples its style embeddings from a normal fitted to a painting data set. log std, not std, so that
  every sample is a valid std; samples of the mean are clipped at 0 since relu4_1 means are
  non-negative.
- `InBatch`: the moments of another image of the same batch (``random``, or ``crossdomain``: from
  another domain, `adain_jax.model.feature_stats.partners`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax import transfer
from adain_jax.io import files
from adain_jax.io import images as image_io
from adain_jax.model import feature_stats
from adain_jax.model.variants import Weights
from adain_jax.precision import Precision

CHANNELS = 512  # relu4_1
BANK_FORMAT = "adain-jax-style-bank/1"


class BankError(files.FileError):
    """A style bank file that cannot be read or written, as one line ``f"{path}: {problem}"``."""


@dataclasses.dataclass(frozen=True, eq=False)
class StyleBank:
    """relu4_1 moments of N style images: ``mean`` and ``std``, (N, 512) float32 each."""

    mean: Any
    std: Any

    def __len__(self) -> int:
        return int(np.shape(self.mean)[0])

    @classmethod
    def from_images(cls, weights: Weights, images: Iterable[np.ndarray], *, batch_size: int = 8,
                    precision: Precision = "float32") -> StyleBank:
        """The moments of equally sized (H, W, 3) images in [0, 1], encoded ``batch_size`` at a time.

        The last batch is padded to ``batch_size`` (and the padding dropped), so every batch is one
        compiled program.
        """
        means: list[np.ndarray] = []
        stds: list[np.ndarray] = []
        batch: list[np.ndarray] = []

        def flush() -> None:
            n = len(batch)
            padded = np.stack(batch + [batch[-1]] * (batch_size - n))
            mean, std = transfer.style_moments(weights, padded, precision=precision)
            means.append(np.asarray(mean)[:n])
            stds.append(np.asarray(std)[:n])
            batch.clear()

        for image in images:
            batch.append(np.asarray(image, np.float32))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        if not means:
            raise ValueError("a style bank needs at least one image")
        return cls(np.concatenate(means), np.concatenate(stds))

    @classmethod
    def from_folder(cls, weights: Weights, folder: str | pathlib.Path, *, size: int = 256, batch_size: int = 8,
                    precision: Precision = "float32",
                    progress: Callable[[Iterable[pathlib.Path]], Iterable[pathlib.Path]] | None = None) -> StyleBank:
        """The bank of every image directly in ``folder`` (`adain_jax.io.images.list_images`), each
        resized to ``size`` on its shorter side and centre-cropped to ``size`` x ``size``.

        A square crop gives one shape, so the folder is encoded in batches by one compiled program; the
        statistics of a centre crop are close to the whole image's for the textures AdaIN transfers.
        A missing folder, a folder without images or an unreadable image raises
        `adain_jax.io.images.ImageError` naming it. ``progress`` wraps the iteration (e.g. ``tqdm``).
        """
        if size <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        paths = image_io.list_images(folder)
        loaded = (image_io.load_image(p, size, crop=True) for p in (progress or (lambda x: x))(paths))
        return cls.from_images(weights, loaded, batch_size=batch_size, precision=precision)

    def save(self, path: str | pathlib.Path, names: Iterable[str] | None = None) -> None:
        """Writes the bank to a ``.npz`` all at once or not at all; ``names``: the styles' file names,
        kept for people reading the file."""
        arrays = {"format": np.array(BANK_FORMAT), "mean": np.asarray(self.mean, np.float32),
                  "std": np.asarray(self.std, np.float32)}
        if names is not None:
            arrays["names"] = np.array(list(names), dtype=str)

        def write(handle) -> None:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub lets **kwds reach allow_pickle

        files.write_atomically(path, write, error=BankError, what="style bank")

    @classmethod
    def load(cls, path: str | pathlib.Path) -> StyleBank:
        """A bank written by `save`; `BankError` (one line naming the file) if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "format" not in npz.files or str(npz["format"]) != BANK_FORMAT:
                    raise BankError(path, f"not an adain-jax style bank (no format {BANK_FORMAT!r})")
                mean, std = np.asarray(npz["mean"], np.float32), np.asarray(npz["std"], np.float32)
        except BankError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise BankError(path, f"not a readable style bank ({e})") from e
        if mean.ndim != 2 or mean.shape[1] != CHANNELS or mean.shape != std.shape or not len(mean):
            raise BankError(path, f"mean and std must both have shape (N, {CHANNELS}) with N >= 1, "
                                  f"got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise BankError(path, "holds non-finite moments or a std that is not positive")
        return cls(mean, std)

    def draw(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` styles drawn uniformly with replacement -> (n, 512) mean and std."""
        idx = jax.random.randint(key, (n,), 0, jnp.shape(self.mean)[0])
        return jnp.asarray(self.mean)[idx], jnp.asarray(self.std)[idx]


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianStyles:
    """A normal distribution over styles: ``mean`` (1024,) of [relu4_1 mean, log std] and the lower
    Cholesky factor ``chol`` (1024, 1024) of its covariance (module docstring)."""

    mean: Any
    chol: Any

    @classmethod
    def fit(cls, bank: StyleBank, *, shrinkage: float = 0.01) -> GaussianStyles:
        """The sample mean and covariance of a bank's [mean, log std] vectors (float64 on the host).

        ``shrinkage``: the fraction of the total variance moved to an isotropic part, so that the
        covariance is positive definite even with fewer styles than its 1,024 dimensions (the
        sample covariance of N styles has rank N - 1); 0.01 by default, our choice.
        """
        if len(bank) < 2:
            raise ValueError(f"fitting a Gaussian takes a bank of at least 2 styles, got {len(bank)}")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        v = np.concatenate([np.asarray(bank.mean, np.float64), np.log(np.asarray(bank.std, np.float64))], axis=1)
        cov = np.cov(v, rowvar=False)
        d = cov.shape[0]
        isotropic = np.trace(cov) / d
        cov = (1.0 - shrinkage) * cov + (shrinkage * isotropic + 1e-9 * max(isotropic, 1.0)) * np.eye(d)
        return cls(v.mean(axis=0).astype(np.float32), np.linalg.cholesky(cov).astype(np.float32))

    def draw(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` new styles -> (n, 512) mean and std."""
        chol = jnp.asarray(self.chol)
        z = jax.random.normal(key, (n, chol.shape[0]), chol.dtype)
        v = jnp.asarray(self.mean) + jnp.einsum("nj,ij->ni", z, chol, precision=jax.lax.Precision.HIGHEST)
        half = v.shape[1] // 2
        return jnp.maximum(v[:, :half], 0.0), jnp.exp(v[:, half:])


@dataclasses.dataclass(frozen=True, eq=False)
class InBatch:
    """Styles from the batch itself: ``mode`` ``"random"`` (any other image) or ``"crossdomain"``
    (an image of another domain: ``domains`` (N,) integer labels, or none for a batch of two domains'
    halves). Built inside the step, e.g. ``InBatch("crossdomain", batch["domain"])``."""

    mode: str = "random"
    domains: Any = None

    def __post_init__(self):
        feature_stats.check_mix(self.mode)

    def draw(self, key: jax.Array, n: int, content_mean: jax.Array, content_std: jax.Array,
             group: int = 1) -> tuple[jax.Array, jax.Array]:
        """The moments of each group's partner (of its first member) -> (n // group, 512) mean and std."""
        partner = feature_stats.partners(key, n, self.mode, self.domains)[::group]
        return content_mean[partner], content_std[partner]


jax.tree_util.register_dataclass(StyleBank, data_fields=["mean", "std"], meta_fields=[])
jax.tree_util.register_dataclass(GaussianStyles, data_fields=["mean", "chol"], meta_fields=[])
jax.tree_util.register_dataclass(InBatch, data_fields=["domains"], meta_fields=["mode"])

Source = StyleBank | GaussianStyles | InBatch

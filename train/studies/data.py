"""The study's inputs: the training/held-out split of the images, and the VGG and where it came from.

Split: unless the config names held-out folders, ``heldout_count`` content and style images are drawn
with ``numpy.random.default_rng(seed)`` from the sorted image lists of ``config.content`` and
``config.style``; the rest become the training folders ``W/data/train/{content,style}`` (symbolic links
to the originals, nothing is copied), the drawn ones ``W/data/heldout/{content,style}``. Every variant
trains on the same folders, so on the same data in the same order.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil

import numpy as np

from train.errors import SetupError

RANDOM_VGG_DIR = "random-vgg"


@dataclasses.dataclass(frozen=True)
class Split:
    train_content: str  # config.content / config.style for training (a folder or a TFDS name)
    train_style: str
    heldout_content: tuple[pathlib.Path, ...]
    heldout_style: tuple[pathlib.Path, ...]
    how: str  # one sentence for the report


def _images(folder) -> list[pathlib.Path]:
    from train import folder_dataset

    return folder_dataset.list_image_files(folder)  # SetupError for a missing or empty folder


def _link_folder(directory: pathlib.Path, files) -> None:
    """``directory`` holding a link to each of ``files`` (built beside it, then renamed into place)."""
    names = sorted(f"{i:04d}_{f.name}" for i, f in enumerate(files))
    if directory.is_dir() and sorted(os.listdir(directory)) == names:
        return  # unchanged: keep the links (and so the prepared TFDS dataset's fingerprint)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, f in enumerate(files):
        (tmp / f"{i:04d}_{f.name}").symlink_to(pathlib.Path(f).absolute())
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def _draw(kind: str, folder, count: int, rng) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    files = _images(folder)
    if len(files) <= count:
        raise SetupError(f"config.{kind} ({folder}) has {len(files)} images: too few to hold {count} out for "
                         f"evaluation and train on the rest (lower --config.heldout_count or pass "
                         f"--config.heldout_{kind}=DIR)")
    held = set(rng.choice(len(files), size=count, replace=False).tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def split(config, workdir: pathlib.Path) -> Split:
    """The training sources and held-out images of ``config`` (folders of links made under ``workdir``)."""
    count = int(config.heldout_count)
    if count < 1:
        raise SetupError(f"config.heldout_count must be at least 1, got {count}")
    rng = np.random.default_rng([int(config.seed), 0x5707])
    train, held, how = {}, {}, []
    for kind in ("content", "style"):
        given = str(config[f"heldout_{kind}"]).strip()
        if given:
            files = _images(given)
            chosen = set(rng.choice(len(files), size=min(count, len(files)), replace=False).tolist())
            held[kind] = [f for i, f in enumerate(files) if i in chosen]
            train[kind] = str(config[kind])
            how.append(f"{len(held[kind])} {kind} images drawn (seed {config.seed}) from {given}")
            continue
        source = str(config[kind])
        if not pathlib.Path(source).expanduser().is_dir():
            raise SetupError(f"config.{kind} ({source}) is not a folder, so no images can be held out of it: pass "
                             f"--config.heldout_{kind}=DIR, a folder of held-out {kind} images")
        kept, held[kind] = _draw(kind, pathlib.Path(source).expanduser(), count, rng)
        _link_folder(workdir / "data" / "train" / kind, kept)
        _link_folder(workdir / "data" / "heldout" / kind, held[kind])
        train[kind] = str(workdir / "data" / "train" / kind)
        how.append(f"{len(held[kind])} of the {len(kept) + len(held[kind])} {kind} images of {source} held out "
                   f"(drawn with seed {config.seed}), training on the other {len(kept)}")
    return Split(train["content"], train["style"], tuple(held["content"]), tuple(held["style"]),
                 "; ".join(how) + ". Every held-out content is paired with every held-out style.")


def random_vgg(workdir: pathlib.Path, seed: int) -> pathlib.Path:
    """``W/random-vgg``: seeded random weights of the official shapes (written once, then reused)."""
    import adain_jax
    from adain_jax.model import networks

    directory = workdir / RANDOM_VGG_DIR
    if not (directory / "weights.npz").is_file():
        adain_jax.save_weights(networks.init_weights(int(seed)), directory,
                               {"note": "RANDOM weights (train.studies --random_vgg), not a trained VGG",
                                "random": True})
    return directory


def describe_vgg(path) -> tuple[str, bool]:
    """``(one line on where the VGG weights came from, whether they are random)`` from the manifest."""
    from adain_jax.io import weights as weights_lib

    try:
        manifest = weights_lib.read_manifest(weights_lib.resolve_weights_dir(pathlib.Path(path).expanduser()))
    except (OSError, ValueError):
        manifest = {}
    note = str(manifest.get("note", ""))
    source = (manifest.get("sources") or {}).get("vgg") or {}
    if manifest.get("converted_by") == "convert/normalize_vgg.py":
        return f"a VGG-19 normalised by convert/normalize_vgg.py ({path}, from {source.get('file')})", False
    if source.get("official"):
        return f"the official normalised VGG-19 ({path}, converted from {source.get('file')})", False
    if manifest.get("random") or "random" in note.lower():
        return (f"**RANDOM VGG weights** ({path}: {note or 'random'}): the numbers and pictures check the machinery "
                "and compare variants on the same random network; they say nothing about the official model.", True)
    return f"VGG weights from {path} (not recognised as the official file: {note or 'no note in the manifest'})", False

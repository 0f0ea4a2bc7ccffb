"""Where training images come from: a folder, a TFDS dataset name or a packaged dataset -> random-access records.

Each of ``config.content`` and ``config.style`` (and ``config.data`` of the StyleGAN runs) is either

* a local folder of images (any depth), turned once into a TFDS dataset by `train.folder_dataset`,
* the name of a TFDS dataset already prepared in the ``array_record`` format under
  ``config.tfds_data_dir`` (e.g. ``coco/2017``; only its ``image`` feature is read), or
* ``sklearn:digits``: scikit-learn's copy of the UCI handwritten digits (1797 grey 8x8 images with
  their labels, inside the scikit-learn package, so nothing is downloaded), for CPU-sized runs.

Both are opened as TFDS *data sources* (random access by record index) and never through tf.data,
so TensorFlow is not needed at all (see docs/training.md for why). Images stay encoded: the input
pipeline (`train.input_pipeline`) decodes them, so an undecodable record can be skipped there.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import sys
from typing import Any, Sequence

import numpy as np

from train.errors import SetupError

_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[\w+.-]+)?(:\d+\.\d+\.\d+)?$")
_FILE_NAME_KEYS = ("image/filename", "file_name", "filename")


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """Random-access records holding one encoded (or decoded) image each."""

    spec: str  # what the config said: a folder or a TFDS name
    records: Sequence[dict]  # a TFDS data source
    image_key: str
    file_name_key: str | None  # for messages about undecodable records
    fingerprint: str  # identifies the data (and so the data order) for resume checks

    def __len__(self) -> int:
        return len(self.records)

    def describe(self) -> dict[str, Any]:
        """What config.json records about this source."""
        return {"spec": self.spec, "records": len(self), "fingerprint": self.fingerprint}


PACKAGED = {"sklearn:digits": "scikit-learn's load_digits: 1797 grey 8x8 digits 0-9 (UCI), labelled"}


def _packaged_source(spec: str) -> ImageSource:
    """A dataset that ships inside a Python package, as records ``{"image": uint8 HxW, "label": int}``."""
    if spec not in PACKAGED:
        raise SetupError(f"{spec}: no such packaged dataset (known: {', '.join(sorted(PACKAGED))})")
    from adain_jax import extras

    try:
        extras.require("train", spec)
    except extras.MissingExtraError as e:
        raise SetupError(str(e)) from None
    from sklearn import datasets

    digits = datasets.load_digits()
    # Grey levels 0..16 -> 0..255, rounded: the 17 levels stay distinct and 16 is white.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    records = [{"image": image, "label": int(label)} for image, label in zip(images, digits.target)]
    return ImageSource(spec, records, "image", None, f"{spec}/{len(records)}")


def hide_accelerators_from_tensorflow() -> None:
    """If TensorFlow got imported (TFDS imports it lazily when it is installed), keep it off the GPUs/TPUs.

    JAX owns the accelerators; a TensorFlow that initialises them would take their memory. Nothing
    here imports TensorFlow itself (that alone takes 13-29 s and 1.3 GB).
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except Exception:  # already initialised, or no such device type: nothing more to do
            pass


def is_folder_spec(spec: str) -> bool:
    """A folder if it exists as one or looks like a path; otherwise a TFDS name such as ``coco/2017``."""
    if os.path.isdir(os.path.expanduser(spec)):
        return True
    return spec.startswith(("/", ".", "~")) or os.sep in spec and not _TFDS_NAME.match(spec)


def _folder_builder(spec: str, data_dir, is_builder: bool):
    from train import folder_dataset

    folder = pathlib.Path(spec).expanduser().absolute()
    files = folder_dataset.list_image_files(folder)  # SetupError if missing or empty
    if is_builder:
        return folder_dataset.prepare(folder, data_dir)
    builder = folder_dataset.AdainImageFolder(folder=folder, files=files, data_dir=os.fspath(data_dir))
    if not builder.is_prepared():
        raise SetupError(f"{folder}: its TFDS dataset is not prepared in {data_dir} (process 0 builds it; "
                         "is config.tfds_data_dir on storage all hosts share?)")
    return builder


def _named_builder(spec: str, data_dir):
    import tensorflow_datasets as tfds

    if not _TFDS_NAME.match(spec):
        raise SetupError(f"{spec}: no such folder, and not a TFDS dataset name (like coco/2017)")
    try:
        # From the prepared files alone: no dataset code runs, so datasets whose code needs
        # TensorFlow (coco does) still load without it.
        return tfds.core.read_only_builder.builder_from_files(spec, data_dir=os.fspath(data_dir))
    except Exception as e:  # DatasetNotFoundError and friends
        raise SetupError(
            f"{spec}: no such folder, and no prepared TFDS dataset of that name in {data_dir} "
            f"({type(e).__name__}). Prepare it once in the array_record format, e.g. `tfds build {spec} "
            f"--file_format=array_record --data_dir={data_dir}` (building coco needs TensorFlow, reading "
            "it does not), or pass a folder of images") from None


def open_source(spec: str, *, kind: str, data_dir: str | os.PathLike, split: str = "train",
                image_key: str = "image", is_builder: bool = True) -> ImageSource:
    """Open ``spec`` (a folder or a TFDS name) as an `ImageSource`; SetupError if it cannot be.

    ``kind`` ("content" or "style") only names the config key in messages. ``is_builder``: whether
    this process may build a folder's dataset (on multi-host runs only process 0 builds, the others
    call again after a barrier).
    """
    spec = str(spec).strip()
    if not spec:
        raise SetupError(f"config.{kind} is empty: give a folder of images or a TFDS dataset name")
    if spec.startswith("sklearn:"):
        return _packaged_source(spec)
    import tensorflow_datasets as tfds

    if is_folder_spec(spec):
        from train import folder_dataset

        builder = _folder_builder(spec, data_dir, is_builder)
        split, image_key, name_key = folder_dataset.SPLIT, folder_dataset.IMAGE_KEY, folder_dataset.FILE_NAME_KEY
        fingerprint = f"folder:{builder.builder_config.name}"
    else:
        builder = _named_builder(spec, data_dir)
        features = builder.info.features
        name_key = next((k for k in _FILE_NAME_KEYS if k in features), None)
        fingerprint = f"tfds:{builder.info.full_name}"
        if image_key not in features:
            raise SetupError(f"{spec}: has no feature {image_key!r} (features: {', '.join(features)}); "
                             f"set config.image_key")
    decoders = None
    if isinstance(builder.info.features[image_key], tfds.features.Image):
        decoders = {image_key: tfds.decode.SkipDecoding()}  # the pipeline decodes, so failures can be skipped
    if split not in builder.info.splits:
        raise SetupError(f"{spec}: no split {split!r} (splits: {', '.join(builder.info.splits)})")
    try:
        records = builder.as_data_source(split=split, decoders=decoders)
    except Exception as e:
        raise SetupError(f"{spec}: cannot read split {split!r} as a data source ({type(e).__name__}: {e}); "
                         "it must be in the array_record format") from None
    if len(records) == 0:
        raise SetupError(f"{spec}: split {split!r} is empty")
    hide_accelerators_from_tensorflow()
    return ImageSource(spec, records, image_key, name_key, f"{fingerprint}/{split}/{len(records)}")


def open_sources(config, data_dir, kinds: Sequence[str] = ("content", "style")) -> tuple[ImageSource, ...]:
    """``config[kind]`` (split ``config[kind + "_split"]``) for each kind as sources (default ``content`` and
    ``style``); on multi-host runs process 0 builds folders first."""
    import jax

    def open_both(is_builder):
        return tuple(open_source(config[kind], kind=kind, data_dir=data_dir, split=config[f"{kind}_split"],
                                 image_key=config.image_key, is_builder=is_builder)
                     for kind in kinds)

    if jax.process_count() == 1:
        return open_both(True)
    from jax.experimental import multihost_utils

    sources = open_both(True) if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("adain_jax: folder datasets prepared")
    return sources if sources is not None else open_both(False)

"""A TFDS dataset built from a local folder of images (e.g. WikiArt), without TensorFlow.

TFDS has no WikiArt builder, and its generic ``ImageFolder`` reads through tf.data, so it needs
TensorFlow. This builder walks a folder (recursively: WikiArt comes as one subfolder per art
movement), and stores every image file's *encoded bytes, unchanged* in the ``array_record`` file
format together with its relative path. Reading back uses ``builder.as_data_source()``: random
access by record index, which is what exact resume needs, and no TensorFlow at any point.

Nothing is decoded while building, so building is a fast copy and a corrupt file does not stop it;
the input pipeline decodes with Pillow and skips (and counts) what it cannot decode.

Each folder gets its own builder config, ``<folder name>-<fingerprint>``, where the fingerprint
hashes the sorted relative paths, sizes and modification times of the image files. A prepared
dataset is reused as long as the folder is unchanged; adding, removing or touching an image gives
a new fingerprint and a new dataset (and so a different data order - training warns on resume).

    builder = prepare(folder, data_dir)        # builds once, then reuses
    source = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    record = source[i]                         # {"image": b"...jpeg bytes...", "file_name": b"a/b.jpg"}
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re

import absl.logging
import tensorflow_datasets as tfds

from adain_jax.io import images as image_io
from train.errors import SetupError

NAME = "adain_image_folder"
IMAGE_KEY = "image"
FILE_NAME_KEY = "file_name"
SPLIT = "train"


def list_image_files(folder) -> list[pathlib.Path]:
    """Image files under ``folder`` (recursively, following links), sorted by relative path.

    Chosen by suffix (`adain_jax.io.images.IMAGE_EXTENSIONS`, case-insensitive); hidden files and
    folders (names starting with ".") are skipped. Raises SetupError for a missing folder, a file, or
    a folder without images.
    """
    folder = pathlib.Path(folder).expanduser()
    if not folder.exists():
        raise SetupError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise SetupError(f"{folder}: not a folder")
    files = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in image_io.IMAGE_EXTENSIONS:
                files.append(pathlib.Path(root, name))
    if not files:
        raise SetupError(f"{folder}: no image files in this folder or its subfolders (looked for "
                         f"{', '.join(image_io.IMAGE_EXTENSIONS)})")
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def fingerprint(folder, files) -> str:
    """A short hash of the folder's image files: relative paths, sizes, modification times."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def config_name(folder, files) -> str:
    """``<folder name>-<fingerprint>``, restricted to the characters TFDS allows in config names."""
    folder = pathlib.Path(folder).expanduser().absolute()
    slug = re.sub(r"[^\w.+-]+", "_", folder.name).strip("_.") or "images"
    return f"{slug[:40]}-{fingerprint(folder, files)}"


# Not put in TFDS's global registry: nothing looks it up by name, and registering would fail if
# this module were imported under two names. A prepared dataset is still an ordinary TFDS dataset
# on disk (`tfds.builder_from_directory` reads it).
with tfds.core.registered.skip_registration():

    class AdainImageFolder(tfds.core.GeneratorBasedBuilder):
        """Encoded image files of one local folder, in the array_record format."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Encoded bytes of every image file, with its relative path."}
        # TFDS looks next to a builder's code for a checksums file of its downloads; this builder
        # downloads nothing, and the lookup would need the `importlib_resources` backport.
        code_path = None

        def __init__(self, *, folder, files=None, **kwargs):
            self._folder = pathlib.Path(folder).expanduser().absolute()
            self._files = list_image_files(self._folder) if files is None else list(files)
            config = tfds.core.BuilderConfig(
                name=config_name(self._folder, self._files),
                description=f"Image files under {self._folder} ({len(self._files)} files).")
            kwargs.setdefault("file_format", "array_record")
            super().__init__(config=config, **kwargs)

        def _info(self) -> tfds.core.DatasetInfo:
            # `Image` stores the bytes it is given as they are (no decoding, no TensorFlow); read it
            # with `SkipDecoding`, since files may be grey, CMYK, 16-bit or have alpha.
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"Images of the local folder {self._folder}.",
                features=tfds.features.FeaturesDict({
                    IMAGE_KEY: tfds.features.Image(),
                    FILE_NAME_KEY: tfds.features.Text(),
                }),
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return {SPLIT: self._generate_examples()}

        def _generate_examples(self):
            for path in self._files:
                rel = path.relative_to(self._folder).as_posix()
                try:
                    data = path.read_bytes()
                except OSError as e:  # unreadable file: leave it out, as an undecodable one is skipped
                    absl.logging.warning("%s: cannot read (%s); left out of the dataset", path, e)
                    continue
                # `Image.encode_example` stores `bytes` exactly as given.
                yield rel, {IMAGE_KEY: data, FILE_NAME_KEY: rel}


def prepare(folder, data_dir) -> AdainImageFolder:
    """The TFDS builder for ``folder``, built under ``data_dir`` unless already there.

    Raises SetupError when the folder is missing or holds no image files.
    """
    folder = pathlib.Path(folder).expanduser().absolute()
    builder = AdainImageFolder(folder=folder, data_dir=os.fspath(data_dir))
    if not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    if builder.info.splits[SPLIT].num_examples == 0:
        raise SetupError(f"{folder}: none of its image files could be read")
    return builder

"""Convert the official AdaIN PyTorch weights to an adain-jax weights directory, without torch.

    python convert/vgg_to_flax.py --vgg vgg_normalised.pth --decoder decoder.pth --out weights/flax
    python convert/vgg_to_flax.py --download --out weights/flax      # fetch, verify, convert
    python -m convert.vgg_to_flax ...                                # the same, as a module

Both forms run from the repository root or from any other folder.

Reads both torch.save serialisations with a restricted unpickler (a weight file never runs code),
checks every tensor against the official layout, maps `nn.Sequential` indices to named layers
(OIHW -> HWIO) and writes ``weights.npz`` plus ``manifest.json`` (`adain_jax.io.weights.save_weights`),
which `adain_jax.load_weights` reads. On any error: one line naming the file, the tensor and the
problem, exit status 1, and no output directory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
import urllib.error
import urllib.request

if not __package__:
    # Run as a script (`python convert/vgg_to_flax.py`, the design card's form), Python puts convert/ first
    # on sys.path; the checkout's root must be there instead so that `convert` and `adain_jax` import.
    sys.path[0] = str(pathlib.Path(__file__).resolve().parents[1])

from adain_jax.io import weights as weights_lib
from convert import torch_layout
from convert.pth_reader import WeightFileError, read_state_dict

RELEASE_URL = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
# git blob ids (`git hash-object FILE`) of the official release files, from ../shared/weights/SOURCES.md.
OFFICIAL_BLOB_IDS = {
    "vgg_normalised.pth": "18a783877329319e5a640ae20f7b98c64e5f5572",
    "decoder.pth": "ccd7832185528ee899f752d532c3a5f08627196a",
}
DOWNLOAD_TIMEOUT_S = 10


class DownloadError(RuntimeError):
    pass


def git_blob_id(path) -> str:
    """SHA-1 of ``"blob <size>\\0" + content``, i.e. what `git hash-object` prints."""
    path = pathlib.Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_record(path) -> dict:
    """Where a weights file came from, for a manifest: its path, size, git blob id, and whether it is official."""
    path = pathlib.Path(path)
    blob = git_blob_id(path)
    return {"file": str(path), "bytes": path.stat().st_size, "git_blob_id": blob,
            "official": blob in OFFICIAL_BLOB_IDS.values()}


def convert(vgg_path, decoder_path, out_dir, *, full_vgg: bool = False) -> pathlib.Path:
    """Convert the two .pth files into the weights directory ``out_dir``; returns its path."""
    vgg_state = read_state_dict(vgg_path)
    decoder_state = read_state_dict(decoder_path)
    weights = torch_layout.weights_from_torch(vgg_path, vgg_state, decoder_path, decoder_state, full_vgg=full_vgg)
    manifest = {"sources": {"vgg": source_record(vgg_path), "decoder": source_record(decoder_path)},
                "full_vgg": full_vgg, "converted_by": "convert/vgg_to_flax.py"}
    return weights_lib.save_weights(weights, out_dir, manifest)


def _fetch(url: str, dest: pathlib.Path, expected_blob: str) -> None:
    """Download ``url`` to ``dest`` through a temporary file; keep it only if its blob id matches."""
    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr,
                      disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        blob = git_blob_id(part)
        if blob != expected_blob:
            raise DownloadError(f"{url}: downloaded file has git blob id {blob}, expected {expected_blob} "
                                "(corrupt or not the official release file); nothing was kept")
        os.replace(part, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DownloadError(f"{url}: download failed ({getattr(e, 'reason', e)})") from e
    finally:
        part.unlink(missing_ok=True)


def download(directory, base_url: str = RELEASE_URL) -> dict[str, pathlib.Path]:
    """Fetch the official files into ``directory`` (skipping ones already there and verified)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, blob in OFFICIAL_BLOB_IDS.items():
        dest = directory / name
        if not (dest.exists() and git_blob_id(dest) == blob):
            try:
                _fetch(f"{base_url.rstrip('/')}/{name}", dest, blob)
            except DownloadError as e:
                raise DownloadError(
                    f"{e}.\nNo network? Download {RELEASE_URL}/vgg_normalised.pth and {RELEASE_URL}/decoder.pth "
                    f"by hand, put them in {directory}/, and run: python -m convert.vgg_to_flax "
                    f"--vgg {directory / 'vgg_normalised.pth'} --decoder {directory / 'decoder.pth'} --out DIR") from None
        paths[name] = dest
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert.vgg_to_flax",
        description="Convert the official AdaIN PyTorch weights (vgg_normalised.pth, decoder.pth) to an "
                    "adain-jax weights directory. torch is not needed.")
    parser.add_argument("--vgg", type=pathlib.Path, help="vgg_normalised.pth (PyTorch state dict)")
    parser.add_argument("--decoder", type=pathlib.Path, help="decoder.pth (PyTorch state dict)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output weights directory")
    parser.add_argument("--full-vgg", action="store_true",
                        help="also keep VGG layers after relu4_1 (unused by AdaIN; off by default)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the official release files first, verify their git blob ids, then convert")
    parser.add_argument("--download-dir", type=pathlib.Path, default=pathlib.Path("weights"),
                        help="where --download puts the .pth files (default: weights/)")
    parser.add_argument("--base-url", default=os.environ.get("ADAIN_JAX_WEIGHTS_URL", RELEASE_URL),
                        help="release URL to download from (default: the PyTorch port's v0.0.0 release; "
                             "env ADAIN_JAX_WEIGHTS_URL)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.download:
            paths = download(args.download_dir, args.base_url)
            args.vgg = args.vgg or paths["vgg_normalised.pth"]
            args.decoder = args.decoder or paths["decoder.pth"]
        if args.vgg is None or args.decoder is None:
            parser.error("give --vgg and --decoder, or --download")
        out = convert(args.vgg, args.decoder, args.out, full_vgg=args.full_vgg)
    except (WeightFileError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (load it with adain_jax.load_weights({str(out)!r}) or adain-jax stylize --weights {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An openly licensed style-transfer training set (content photos, style paintings) from Debian packages.

    python -m train.debian_data --out DIR [--debs DEBS] [--exclude-like IMAGES ...]

One command, offline after the downloads: ``apt-get download NAME=VERSION`` fetches each pinned
Debian bookworm package of `SOURCES` into ``OUT/.cache/debs`` (or ``--debs DIR`` supplies the .deb
files), ``dpkg -x`` unpacks it into ``OUT/.cache/unpacked/<pkg>`` (nothing is installed), and the
images that the table's glob patterns select become

* ``OUT/content/``, ``OUT/style/``                  training images (the trainer reads them recursively,
                                                    so nothing else is ever put there),
* ``OUT/heldout/content/``, ``OUT/heldout/style/``  the test split, about 10% of each role (>= 8),
* ``OUT/manifest.json``                             one record per image (split, role, package, version,
                                                    path in the package, licence, copyright, sha256),
* ``OUT/SOURCES.md``                                the same, per package, for people.

Selection rules, in order: the table's patterns; RGBA images cropped to their opaque region and
composited on their own mean colour; short side >= 256 px; exact duplicates (same decoded pixels) and
near duplicates (`is_near`: a 64-bit difference hash and a 16x16 thumbnail both close, e.g. one
wallpaper at several resolutions) dropped, keeping the largest original; anything near an image under
``--exclude-like`` dropped; then RGB, short side at most 512 px (LANCZOS), JPEG quality 95.
Everything is taken in sorted order, so two runs give byte-identical manifests.

Licences come from each package's ``usr/share/doc/<pkg>/copyright``: a machine-readable (DEP-5) file
gives each image the License and Copyright of the last ``Files:`` stanza that matches it; a licence
override in the table (needed where the file is not DEP-5, or wrong for the images) takes precedence.
Resume: downloads and unpacked trees (``<pkg>.done`` marker) and every analysed image
(``OUT/.cache/staging``) are reused, outputs are written atomically and the manifest last.
Details and the real run's counts: docs/data.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

from adain_jax.io import files
from adain_jax.io.images import IMAGE_EXTENSIONS, resized_size, to_rgb
from train.errors import SetupError

__all__ = [
    "SOURCES",
    "PackageError",
    "Source",
    "build",
    "choose_heldout",
    "dhash",
    "glob_to_regex",
    "hamming",
    "is_near",
    "licence_for",
    "main",
    "output_name",
    "parse_copyright",
    "prepare_image",
    "thumbnail",
]

ROLES = ("content", "style")
_IMAGE_FOLDERS = ("content", "style", "heldout")  # under OUT; the recipe owns everything in them
MIN_SHORT_SIDE = 256  # AdaIN trains on 256x256 crops: anything smaller would be upscaled
MAX_SHORT_SIDE = 512  # the paper resizes to 512 before cropping; bigger only costs decode time
JPEG_QUALITY = 95
DHASH_THRESHOLD = 4  # bits out of 64; a rescaled copy differs by 0-2
# The difference hash alone confuses pictures in the same frame (freecol's founding fathers differ by
# 1-6 bits): a near duplicate must also match a 16x16 grey thumbnail to within this mean absolute
# difference (0-255). Rescaled copies give about 1; the closest distinct pictures here give 6.
THUMB_THRESHOLD = 4.0
ALPHA_OPAQUE = 128  # alpha at or above this counts as part of the picture when cropping
HELDOUT_MODULUS = 10  # int(sha256[:8], 16) % 10 == 0 -> held out (about 10%)
MIN_HELDOUT = 8  # per role, so that a test split always exists
# Bump when a rule that changes staged images changes: stale staging entries are then recomputed.
RECIPE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Source:
    """One package's contribution: which files (glob patterns relative to the unpacked root, ``*``
    within a folder, ``**`` across folders), in which role, and how their licence is found."""

    package: str
    version: str
    role: str  # "content" (photos) or "style" (paintings, illustrations)
    patterns: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    licence: str | None = None  # overrides the copyright file (non-DEP-5 or wrong for these files)
    copyright: str | None = None  # goes with `licence`
    # (installed prefix, upstream prefix): where the DEP-5 file's paths differ from the installed ones.
    upstream: tuple[str, str] | None = None
    limit: int | None = None  # at most this many files, the first by sorted sha256 of their bytes


_WESNOTH = "1:1.16.9-1"
_WESNOTH_DIR = "usr/share/games/wesnoth/1.16/data"
# Wesnoth's copyright file is not machine-readable; it puts the whole game under GPL-2+.
_WESNOTH_LICENCE = "GPL-2+"
_WESNOTH_COPYRIGHT = ("2003-2023 David White and the Battle for Wesnoth contributors "
                      "(https://www.wesnoth.org/, see the package's copyright file)")
_PLASMA = "usr/share/wallpapers"


def _wesnoth(package: str, campaign: str, pattern: str = "*", exclude: tuple[str, ...] = ()) -> Source:
    base = f"{_WESNOTH_DIR}/campaigns/{campaign}/images/story"
    return Source(package, _WESNOTH, "style", (f"{base}/{pattern}",), tuple(f"{base}/{e}" for e in exclude),
                  licence=_WESNOTH_LICENCE, copyright=_WESNOTH_COPYRIGHT)


def _plasma(role: str, names: Sequence[str]) -> Source:
    # A KDE wallpaper is a folder of sizes (contents/images/, images_dark/); screenshot.* previews are
    # left out by the pattern. Where a wallpaper also ships a portrait crop of the same artwork
    # (1080x1920 and the like), the entry names its landscape file: a crop is not a rescaled copy,
    # so the near-duplicate rule would keep both.
    return Source("plasma-workspace-wallpapers", "4:5.27.5-2", role,
                  tuple(f"{_PLASMA}/{name}" if "/" in name else f"{_PLASMA}/{name}/contents/images*/*"
                        for name in names))


# Which wallpapers are photos (content), which paintings or illustrations (style), and which abstract
# renders, gradients or logos (left out), was judged by eye from contact sheets; see docs/data.md.
SOURCES: tuple[Source, ...] = (
    # --- content: photographs ---
    Source("endless-sky-data", "0.9.8-1.2", "content", ("usr/share/games/endless-sky/images/land/*",)),
    Source("mate-backgrounds", "1.26.0-1", "content", ("usr/share/backgrounds/mate/nature/*",)),
    Source("lomiri-wallpapers-16.04", "20.04.0-2", "content", ("usr/share/backgrounds/*",),
           exclude=("usr/share/backgrounds/analogpattern_by_Peter_Nerlich.jpg",  # abstract pattern
                    "usr/share/backgrounds/umang_by_Abhishek_Mudgal.jpg"),  # gradient
           upstream=("usr/share/backgrounds/", "16.04/")),
    # The DEP-5 file gives the LXQt team's LGPL for "*"; the wallpapers folder's own License file
    # says CC-BY-SA-3.0 and credits the photographers, which is what applies to these images.
    Source("lxqt-themes", "1.2.0-1", "content",
           tuple(f"usr/share/lxqt/wallpapers/{name}" for name in (
               "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
               "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
               "this-is-not-windows.jpg")),
           licence="CC-BY-SA-3.0",
           copyright=("2022 LXQt Project Team; photographs by stefonarch (standreas@riseup.net) and others "
                      "(usr/share/lxqt/wallpapers/License)")),
    _plasma("content", ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                        "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")),
    # --- style: paintings and illustrations ---
    _plasma("style", ("Altai/contents/images/5120x2880.png", "Autumn", "FlyingKonqui",
                      "SafeLanding/contents/images/5120x2880.jpg")),
    Source("ukui-wallpapers", "20.04.3-1.1", "style",
           tuple(f"usr/share/backgrounds/{name}" for name in (
               "calla.png", "firstgeneration.jpg", "goldfish.png", "the-mouse.jpg"))),
    Source("wesnoth-1.16-data", _WESNOTH, "style", (f"{_WESNOTH_DIR}/core/images/story/*",),
           licence=_WESNOTH_LICENCE, copyright=_WESNOTH_COPYRIGHT),
    # Painted portraits with transparent backgrounds: a fixed subset, cropped and composited.
    Source("wesnoth-1.16-data", _WESNOTH, "style", (f"{_WESNOTH_DIR}/core/images/portraits/**",),
           licence=_WESNOTH_LICENCE, copyright=_WESNOTH_COPYRIGHT, limit=120),
    _wesnoth("wesnoth-1.16-did", "Descent_Into_Darkness"),
    _wesnoth("wesnoth-1.16-dm", "Delfadors_Memoirs", "**"),  # includes story/portraits/
    _wesnoth("wesnoth-1.16-httt", "Heir_To_The_Throne"),
    _wesnoth("wesnoth-1.16-l", "Liberty"),
    _wesnoth("wesnoth-1.16-low", "Legend_of_Wesmere", "**"),  # story/characters/ only
    _wesnoth("wesnoth-1.16-trow", "The_Rise_Of_Wesnoth", exclude=("trow-logo.png",)),  # title lettering
    _wesnoth("wesnoth-1.16-tsg", "The_South_Guard"),
    _wesnoth("wesnoth-1.16-ttb", "Two_Brothers"),
    # Not taken: wesnoth-1.16-sota (its images/story/ holds in-game map and room renders, not
    # paintings); wesnoth-1.16-{dw,ei,nr,sof,sotbe,thot,utbs} (no images/story/ at all).
    Source("stellarium-data", "0.22.2-1", "style",
           ("usr/share/stellarium/skycultures/greek_leidenAratea/**",)),
    Source("freecol", "1.0.0-1", "style",
           ("usr/share/games/freecol/default/resources/images/foundingFathers/*",)),
)


class PackageError(SetupError):
    """A problem with one package (download, .deb, contents), as one line that names the package."""

    def __init__(self, package: str, problem: str):
        super().__init__(f"{package}: {' '.join(str(problem).split())}")


# ----------------------------------------------------------------------------- globs and names


def glob_to_regex(pattern: str) -> re.Pattern:
    """The table's glob as a regex over ``/``-separated paths: ``*`` and ``?`` stay inside one
    folder, ``**`` spans folders (``a/**/b`` also matches ``a/b``), ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 1:]:
            j = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1:j].replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _base(patterns: Iterable[str]) -> str:
    """The folder all patterns start in (before any wildcard), ``""`` or ending in ``/``."""
    prefixes = []
    for p in patterns:
        fixed = []
        for part in p.split("/")[:-1]:
            if any(ch in part for ch in "*?["):
                break
            fixed.append(part)
        prefixes.append(fixed)
    common = prefixes[0]
    for fixed in prefixes[1:]:
        n = 0
        while n < min(len(common), len(fixed)) and common[n] == fixed[n]:
            n += 1
        common = common[:n]
    return "".join(part + "/" for part in common)


def output_name(package: str, relative: str) -> str:
    """``<package>__<path with every character outside [A-Za-z0-9.-] as _>.jpg`` (no extension)."""
    stem = relative.rsplit(".", 1)[0] if "." in relative.rsplit("/", 1)[-1] else relative
    return f"{package}__{re.sub(r'[^A-Za-z0-9.-]', '_', stem)}.jpg"


# ----------------------------------------------------------------------------- licences


def _paragraphs(text: str) -> list[dict[str, str]]:
    """RFC-822-style paragraphs (DEP-5): field -> value, continuation lines joined with newlines."""
    paragraphs, current, field = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, field = {}, None
        elif line[0] in " \t" and field is not None:
            current[field] += "\n" + line.strip()
        elif ":" in line and not line[0].isspace():
            field, value = line.split(":", 1)
            field = field.strip().lower()
            current[field] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def parse_copyright(text: str) -> list[dict[str, str]] | None:
    """The ``Files:`` stanzas of a machine-readable copyright file, in order, as dicts with
    ``patterns`` (a list), ``copyright`` and ``license`` (its first line); None if not DEP-5."""
    paragraphs = _paragraphs(text)
    if not paragraphs or "format" not in paragraphs[0] or "copyright-format" not in paragraphs[0]["format"]:
        return None
    stanzas = []
    for p in paragraphs[1:]:
        if "files" in p:
            stanzas.append({
                "patterns": p["files"].split(),
                "copyright": " ".join(p.get("copyright", "").split()),
                "license": p.get("license", "").split("\n", 1)[0].strip(),
            })
    return stanzas


def _dep5_regex(pattern: str) -> re.Pattern:
    # DEP-5 globs: "*" matches anything including "/", "?" one character, nothing else is special.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def licence_for(stanzas: list[dict[str, str]], path: str,
                upstream: tuple[str, str] | None = None) -> tuple[str, str] | None:
    """(licence, copyright) of the last stanza whose patterns match ``path`` (installed, relative
    to the package root), or None. DEP-5 paths are the upstream source's, not the installed ones, so
    a pattern may match any tail of the path (``images/land/*`` matches
    ``usr/share/games/endless-sky/images/land/x.jpg``); ``upstream`` maps an installed prefix to
    the source folder when the two differ by more than a leading part."""
    parts = path.split("/")
    candidates = ["/".join(parts[i:]) for i in range(len(parts))]
    if upstream and path.startswith(upstream[0]):
        candidates.insert(0, upstream[1] + path[len(upstream[0]):])
    found = None
    for stanza in stanzas:
        if any(_dep5_regex(p).match(c) for p in stanza["patterns"] for c in candidates):
            found = (stanza["license"], stanza["copyright"])
    return found


# ----------------------------------------------------------------------------- images


def prepare_image(image: Image.Image) -> Image.Image:
    """Decoded image -> the RGB picture the recipe keeps (before the size rules).

    Transparent images (the painted portraits) are cropped to the bounding box of their opaque
    pixels and the rest composited on the alpha-weighted mean colour of the picture: a neutral
    background taken from the painting itself adds no foreign colour to its style statistics, where
    white or black would.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:
            box = alpha.point(lambda a: 255 if a >= ALPHA_OPAQUE else 0).getbbox()
            if box is None:
                return Image.new("RGB", (0, 0))
            rgba = rgba.crop(box)
            array = np.asarray(rgba, dtype=np.float64)
            weight = array[:, :, 3:] / 255.0
            mean = (array[:, :, :3] * weight).sum(axis=(0, 1)) / max(weight.sum(), 1e-9)
            background = Image.new("RGBA", rgba.size, (*(round(float(v)) for v in mean), 255))
            background.alpha_composite(rgba)
            return background.convert("RGB")
        return rgba.convert("RGB")
    return to_rgb(image)


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: 9x8 grey thumbnail, one bit per horizontal neighbour pair (left > right)."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (grey[:, :-1] > grey[:, 1:]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def thumbnail(image: Image.Image) -> str:
    """16x16 grey thumbnail (BOX filter) as 512 hex digits, the second test of `is_near`."""
    return image.convert("L").resize((16, 16), Image.Resampling.BOX).tobytes().hex()


def is_near(a: tuple[int, str], b: tuple[int, str]) -> bool:
    """Whether two (dhash, thumbnail) pairs are the same picture, rescaled or re-encoded."""
    if hamming(a[0], b[0]) > DHASH_THRESHOLD:
        return False
    ta = np.frombuffer(bytes.fromhex(a[1]), dtype=np.uint8).astype(np.int16)
    tb = np.frombuffer(bytes.fromhex(b[1]), dtype=np.uint8).astype(np.int16)
    return float(np.abs(ta - tb).mean()) <= THUMB_THRESHOLD


def _downscale(image: Image.Image) -> Image.Image:
    if min(image.size) <= MAX_SHORT_SIDE:
        return image
    return image.resize(resized_size(*image.size, MAX_SHORT_SIDE), Image.Resampling.LANCZOS)


def _encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _analyse(path: pathlib.Path) -> tuple[dict, bytes | None]:
    """Features of one candidate file and its JPEG bytes (None when it is dropped as too small)."""
    with Image.open(path) as opened:
        opened.load()
        original = opened.size
        picture = prepare_image(opened)
    info = {"original_size": list(original), "size": list(picture.size)}
    if min(picture.size) < MIN_SHORT_SIDE:
        info["small"] = True
        return info, None
    info["pixels_sha256"] = hashlib.sha256(
        f"{picture.size[0]}x{picture.size[1]}:".encode() + picture.tobytes()).hexdigest()
    small = _downscale(picture)
    info["dhash"] = f"{dhash(small):016x}"
    info["thumbnail"] = thumbnail(small)
    data = _encode_jpeg(small)
    info["sha256"] = hashlib.sha256(data).hexdigest()
    return info, data


def choose_heldout(shas: Sequence[str]) -> set[str]:
    """The held-out images of one role, by sha256 of the written file: those with
    ``int(sha[:8], 16) % 10 == 0``, topped up to `MIN_HELDOUT` in the order of that key."""
    order = sorted(shas, key=lambda s: (int(s[:8], 16) % HELDOUT_MODULUS, s))
    n = max(MIN_HELDOUT, sum(1 for s in shas if int(s[:8], 16) % HELDOUT_MODULUS == 0))
    return set(order[:min(n, len(order))])


# ----------------------------------------------------------------------------- packages


def _run(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, **kwargs)


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def _deb_version(package: str, deb: pathlib.Path) -> str:
    result = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"])
    if result.returncode != 0:
        raise PackageError(package, f"{deb}: not a readable .deb (dpkg-deb: {_last_line(result.stderr)})")
    fields = _paragraphs(result.stdout)
    fields = fields[0] if fields else {}
    if fields.get("package") != package:
        raise PackageError(package, f"{deb}: the .deb is package {fields.get('package')!r}")
    return fields.get("version", "")


def _sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_deb(package: str, version: str, folder: pathlib.Path) -> pathlib.Path | None:
    for deb in sorted(folder.glob(f"{package}_*.deb")):
        if _deb_version(package, deb) == version:
            return deb
    return None


def _obtain_deb(source: Source, debs: pathlib.Path | None, cache: pathlib.Path) -> pathlib.Path:
    """The .deb of ``source``: from ``--debs``, else from the download cache, else ``apt-get download``."""
    if debs is not None:
        deb = _find_deb(source.package, source.version, debs)
        if deb is None:
            raise PackageError(source.package, f"no .deb of version {source.version} in {debs}")
        return deb
    folder = cache / "debs"
    folder.mkdir(parents=True, exist_ok=True)
    deb = _find_deb(source.package, source.version, folder)
    if deb is not None:
        return deb
    # apt-get writes into its working folder; a private temporary one keeps a half-finished
    # download away from the cache, which then only ever holds complete files.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as temp:
        result = _run(["apt-get", "download", f"{source.package}={source.version}"], cwd=temp)
        got = sorted(pathlib.Path(temp).glob("*.deb"))
        if result.returncode != 0 or len(got) != 1:
            raise PackageError(source.package, f"apt-get download {source.package}={source.version} failed: "
                                               f"{_last_line(result.stderr or result.stdout)}")
        if _deb_version(source.package, got[0]) != source.version:
            raise PackageError(source.package, f"apt-get gave another version than {source.version}")
        deb = folder / got[0].name
        os.replace(got[0], deb)
    return deb


def _unpack(source: Source, deb: pathlib.Path, deb_sha: str, cache: pathlib.Path) -> pathlib.Path:
    """``dpkg -x`` into ``cache/unpacked/<pkg>``, reused when its marker names the same .deb."""
    folder = cache / "unpacked"
    target, marker = folder / source.package, folder / f"{source.package}.done"
    stamp = f"{source.version}\n{deb_sha}\n"
    if target.is_dir() and marker.is_file() and marker.read_text() == stamp:
        return target
    marker.unlink(missing_ok=True)
    partial = folder / f".{source.package}.partial"
    for stale in (partial, target):
        if stale.exists():
            shutil.rmtree(stale)
    partial.mkdir(parents=True)
    result = _run(["dpkg", "-x", str(deb), str(partial)])
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise PackageError(source.package, f"{deb}: dpkg -x failed: {_last_line(result.stderr)}")
    os.replace(partial, target)
    # Written only after the tree is complete: an interrupted unpack is redone, never half-used.
    files.write_atomically(marker, lambda handle: handle.write(stamp.encode()))
    return target


def _tree(root: pathlib.Path) -> list[str]:
    """Every regular file under ``root`` as a sorted ``/``-separated relative path."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            path = pathlib.Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def _candidates(source: Source, root: pathlib.Path, tree: list[str]) -> list[str]:
    include = [glob_to_regex(p) for p in source.patterns]
    exclude = [glob_to_regex(p) for p in source.exclude]
    chosen = [rel for rel in tree
              if pathlib.PurePosixPath(rel).suffix.lower() in IMAGE_EXTENSIONS
              and any(r.match(rel) for r in include) and not any(r.match(rel) for r in exclude)]
    if source.limit is not None and len(chosen) > source.limit:
        keyed = sorted((_sha256_file(root / rel), rel) for rel in chosen)
        chosen = sorted(rel for _, rel in keyed[:source.limit])
    return chosen


def _package_licence(source: Source, root: pathlib.Path) -> list[dict[str, str]] | None:
    copyright_file = root / "usr/share/doc" / source.package / "copyright"
    if source.licence is not None:
        return None
    if not copyright_file.is_file():
        raise PackageError(source.package, f"no usr/share/doc/{source.package}/copyright and no licence "
                                           "override in the source table")
    stanzas = parse_copyright(copyright_file.read_text(encoding="utf-8", errors="replace"))
    if stanzas is None:
        raise PackageError(source.package, "its copyright file is not machine-readable (DEP-5): "
                                           "give a licence override in the source table")
    return stanzas


# ----------------------------------------------------------------------------- the recipe


def _reference_hashes(folders: Sequence[pathlib.Path]) -> list[tuple[tuple[int, str], str]]:
    """Difference hashes of the images under ``--exclude-like`` folders (recursively), prepared
    like the recipe's own so that the same picture gives the same hash."""
    hashes = []
    for folder in folders:
        if not folder.is_dir():
            raise SetupError(f"{folder}: --exclude-like needs a folder of images")
        for rel in _tree(folder):
            name = pathlib.PurePosixPath(rel)
            if name.suffix.lower() not in IMAGE_EXTENSIONS or name.name.startswith("."):
                continue
            try:
                with Image.open(folder / rel) as opened:
                    opened.load()
                    picture = prepare_image(opened)
            except (OSError, ValueError) as e:
                print(f"warning: {folder / rel}: skipped, not readable ({e})", file=sys.stderr)
                continue
            if min(picture.size) > 0:
                small = _downscale(picture)
                hashes.append(((dhash(small), thumbnail(small)), f"{folder.name}/{rel}"))
    return hashes


def _stage(source: Source, rel: str, path: pathlib.Path, staging: pathlib.Path, name: str) -> dict:
    """Analyses one candidate once: features in ``<name>.json``, JPEG bytes in ``<name>`` (reused)."""
    sidecar, jpeg = staging / (name + ".json"), staging / name
    if sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
            if info.get("recipe") == RECIPE_VERSION and (info.get("small") or jpeg.is_file()):
                return info
        except ValueError:
            pass
    try:
        info, data = _analyse(path)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise PackageError(source.package, f"{rel}: cannot decode the image ({e})") from e
    info["recipe"] = RECIPE_VERSION
    if data is not None:
        files.write_atomically(jpeg, lambda handle: handle.write(data))
    # The sidecar goes last: it says the JPEG next to it is complete.
    files.write_atomically(sidecar, lambda handle: handle.write(json.dumps(info, sort_keys=True).encode()))
    return info


def _progress(iterable, total: int, description: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the project's dependencies; a bare install still works
        return iterable
    return tqdm(iterable, total=total, desc=description, unit="image", file=sys.stderr, disable=None)


def build(out: str | os.PathLike, *, debs: str | os.PathLike | None = None,
          exclude_like: Sequence[str | os.PathLike] = (), sources: Sequence[Source] = SOURCES) -> dict:
    """Builds the data set in ``out`` (module docstring) and returns the manifest."""
    out = pathlib.Path(out)
    if debs is None and shutil.which("apt-get") is None:
        raise SetupError("apt-get not found: this recipe downloads Debian packages with apt-get "
                         "(Debian/Ubuntu); on other systems pass --debs DIR with the .deb files")
    for tool in ("dpkg-deb", "dpkg"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} not found: this recipe unpacks .deb files with dpkg (Debian/Ubuntu)")
    debs = pathlib.Path(debs) if debs is not None else None
    if debs is not None and not debs.is_dir():
        raise SetupError(f"{debs}: --debs needs a folder of .deb files")
    references = _reference_hashes([pathlib.Path(f) for f in exclude_like])
    cache = out / ".cache"

    # 1. Packages: download or find, unpack, select the candidate files.
    unpacked: dict[tuple[str, str], tuple[pathlib.Path, str, list[str]]] = {}
    plan = []  # (source, rel, root, name, licence, copyright)
    names: dict[str, tuple[str, str]] = {}
    for source in sources:
        if source.role not in ROLES:
            raise SetupError(f"{source.package}: role {source.role!r} is not one of {', '.join(ROLES)}")
        key = (source.package, source.version)
        if key not in unpacked:
            print(f"{source.package} {source.version}", file=sys.stderr)
            deb = _obtain_deb(source, debs, cache)
            deb_sha = _sha256_file(deb)
            root = _unpack(source, deb, deb_sha, cache)
            unpacked[key] = (root, deb_sha, _tree(root))
        root, _, tree = unpacked[key]
        chosen = _candidates(source, root, tree)
        if not chosen:
            raise PackageError(source.package, f"no image files match {', '.join(source.patterns)}")
        stanzas = _package_licence(source, root)
        base = _base(source.patterns)
        for rel in chosen:
            name = output_name(source.package, rel[len(base):] if rel.startswith(base) else rel)
            if name in names and names[name] != (*key, rel):
                raise SetupError(f"{source.package}: two files would both be written as {name}: "
                                 f"{names[name][2]} and {rel} (make the source table's patterns distinct)")
            names[name] = (*key, rel)
            if stanzas is None:
                licence, holder = source.licence, source.copyright or ""
            else:
                found = licence_for(stanzas, rel, source.upstream)
                if found is None:
                    raise PackageError(source.package, f"{rel}: no Files: stanza of its copyright file matches")
                licence, holder = found
            plan.append((source, rel, root, name, licence, holder))

    # 2. Images: decode, prepare, size rule, features and JPEG bytes (staged, reused on resume).
    items = []
    for source, rel, root, name, licence, holder in _progress(plan, len(plan), "images"):
        staging = cache / "staging" / f"{source.package}_{re.sub(r'[^A-Za-z0-9.-]', '_', source.version)}"
        info = _stage(source, rel, root / rel, staging, name)
        items.append({"source": source, "rel": rel, "name": name, "licence": licence,
                      "copyright": holder, "info": info, "staged": staging / name})

    # 3. Duplicates and look-alikes, largest original first; ties in table order (sorted paths).
    dropped, kept = [], []
    order = sorted(range(len(items)), key=lambda i: (
        -items[i]["info"]["original_size"][0] * items[i]["info"]["original_size"][1], i))
    seen_pixels: dict[str, dict] = {}
    for i in order:
        item, info = items[i], items[i]["info"]
        where = {"package": item["source"].package, "path": item["rel"]}
        if info.get("small"):
            dropped.append(where | {"reason": f"short side {min(info['size'])} < {MIN_SHORT_SIDE} px"})
            continue
        if info["pixels_sha256"] in seen_pixels:
            other = seen_pixels[info["pixels_sha256"]]
            dropped.append(where | {"reason": f"exact duplicate of {other['source'].package}:{other['rel']}"})
            continue
        h = (int(info["dhash"], 16), info["thumbnail"])
        near = next((k for k in kept if is_near(h, k["near"])), None)
        if near is not None:
            dropped.append(where | {"reason": f"near duplicate of {near['source'].package}:{near['rel']}"})
            continue
        like = next((ref for ref_hash, ref in references if is_near(h, ref_hash)), None)
        if like is not None:
            dropped.append(where | {"reason": f"looks like excluded image {like}"})
            continue
        seen_pixels[info["pixels_sha256"]] = item
        item["near"] = h
        kept.append(item)

    # 4. Held-out split per role, then the layout.
    heldout = set()
    for role in ROLES:
        heldout |= choose_heldout([k["info"]["sha256"] for k in kept if k["source"].role == role])
    records = []
    for item in kept:
        split = "heldout" if item["info"]["sha256"] in heldout else "train"
        role = item["source"].role
        folder = f"heldout/{role}" if split == "heldout" else role
        records.append({
            "split": split, "role": role, "path": f"{folder}/{item['name']}",
            "package": item["source"].package, "version": item["source"].version,
            "source_path": item["rel"], "licence": item["licence"], "copyright": item["copyright"],
            "sha256": item["info"]["sha256"], "size": _downscale_size(item["info"]["size"]),
            "original_size": item["info"]["original_size"],
        })
        item["record"] = records[-1]
    if not records:
        raise SetupError("no images left after the selection rules")
    records.sort(key=lambda r: r["path"])
    dropped.sort(key=lambda d: (d["package"], d["path"]))
    manifest = _manifest(records, dropped, sources, unpacked, exclude_like, len(references))
    text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    # 5. Outputs. An old manifest goes first when anything changes, so a manifest is only ever next
    # to the files it describes; files not in this plan are removed from the four image folders.
    manifest_path = out / "manifest.json"
    wanted = {r["path"]: r["sha256"] for r in records}
    present = {path.relative_to(out).as_posix() for folder in _IMAGE_FOLDERS if (out / folder).is_dir()
               for path in (out / folder).rglob("*") if path.is_file()}
    if manifest_path.is_file() and manifest_path.read_text(encoding="utf-8") == text and present == set(wanted):
        _write_sources(out, manifest)  # a finished run: nothing to do
        return manifest
    manifest_path.unlink(missing_ok=True)
    for item in kept:
        target = out / item["record"]["path"]
        if target.is_file() and _sha256_file(target) == item["record"]["sha256"]:
            continue
        data = item["staged"].read_bytes()
        if hashlib.sha256(data).hexdigest() != item["record"]["sha256"]:
            raise SetupError(f"{item['staged']}: staged image changed; delete {cache / 'staging'} and rerun")
        files.write_atomically(target, lambda handle, data=data: handle.write(data), what="image")
    for rel in sorted(present - set(wanted)):
        (out / rel).unlink()  # left by an older run or another hand: training must not read it
    _write_sources(out, manifest)
    files.write_atomically(manifest_path, lambda handle: handle.write(text.encode("utf-8")))
    return manifest


def _downscale_size(size: Sequence[int]) -> list[int]:
    w, h = size
    return list(resized_size(w, h, MAX_SHORT_SIDE)) if min(w, h) > MAX_SHORT_SIDE else [w, h]


def _counts(records: list[dict]) -> dict:
    by_package: dict = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
    by_role: dict = collections.defaultdict(collections.Counter)
    for r in records:
        by_package[r["package"]][r["role"]][r["split"]] += 1
        by_role[r["role"]][r["split"]] += 1
    return {
        "total": len(records),
        "by_role": {role: dict(c) for role, c in by_role.items()},
        "by_split": dict(collections.Counter(r["split"] for r in records)),
        "by_package": {p: {role: dict(c) for role, c in roles.items()} for p, roles in by_package.items()},
        "by_licence": dict(collections.Counter(r["licence"] for r in records)),
    }


def _manifest(records, dropped, sources, unpacked, exclude_like, n_references) -> dict:
    return {
        "recipe": "python -m train.debian_data",
        "recipe_version": RECIPE_VERSION,
        "rules": {
            "min_short_side": MIN_SHORT_SIDE, "max_short_side": MAX_SHORT_SIDE,
            "jpeg_quality": JPEG_QUALITY, "dhash_threshold_bits": DHASH_THRESHOLD,
            "thumbnail_threshold": THUMB_THRESHOLD,
            "heldout": f"int(sha256[:8], 16) % {HELDOUT_MODULUS} == 0, at least {MIN_HELDOUT} per role",
            "alpha": f"crop to alpha >= {ALPHA_OPAQUE}, composite on the mean colour",
        },
        "sources": [dataclasses.asdict(s) | {"deb_sha256": unpacked[(s.package, s.version)][1]}
                    for s in sources],
        "exclude_like": {"folders": [os.fspath(f) for f in exclude_like], "images": n_references},
        "counts": _counts(records),
        "images": records,
        "dropped": dropped,
    }


def _attribution(licence: str) -> str:
    lowered = licence.lower()
    return "no" if lowered.startswith(("public-domain", "cc0")) else "yes"


def _write_sources(out: pathlib.Path, manifest: dict) -> None:
    """OUT/SOURCES.md: per package, what was taken, under which licence, and the attribution."""
    lines = [
        "# Sources of this data set",
        "",
        "Made by `python -m train.debian_data` from Debian bookworm packages (pinned versions).",
        "Every image's licence and copyright are in `manifest.json`; this is the summary per package.",
        "Attribution is required for every licence here except public domain and CC0.",
        "",
    ]
    by_package = collections.defaultdict(list)
    for r in manifest["images"]:
        by_package[r["package"]].append(r)
    seen = set()
    for s in manifest["sources"]:
        if s["package"] in seen:
            continue
        seen.add(s["package"])
        taken = [t for t in manifest["sources"] if t["package"] == s["package"]]
        records = by_package.get(s["package"], [])
        train = sum(r["split"] == "train" for r in records)
        lines += [f"## {s['package']} {s['version']}", ""]
        for t in taken:
            limit = f" (at most {t['limit']}, by sha256)" if t["limit"] else ""
            lines.append(f"- {t['role']}: " + ", ".join(f"`{p}`" for p in t["patterns"]) + limit)
        lines += ["", f"{len(records)} images ({train} train, {len(records) - train} held out).", "",
                  "| Licence | Images | Copyright | Attribution required |", "|---|---|---|---|"]
        groups = collections.Counter((r["licence"], r["copyright"]) for r in records)
        for (licence, holder), n in sorted(groups.items()):
            cell = holder.replace("|", "\\|") or "-"
            lines.append(f"| {licence} | {n} | {cell} | {_attribution(licence)} |")
        lines.append("")
    text = "\n".join(lines)
    path = out / "SOURCES.md"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        files.write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def _summary(manifest: dict) -> str:
    counts = manifest["counts"]
    lines = [f"{counts['total']} images, {len(manifest['dropped'])} dropped"]
    for role, splits in sorted(counts["by_role"].items()):
        lines.append(f"  {role}: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))
    for package, roles in sorted(counts["by_package"].items()):
        lines.append(f"  {package}: " + "; ".join(
            f"{role} " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
            for role, splits in sorted(roles.items())))
    lines.append("  licences: " + ", ".join(f"{k} {v}" for k, v in sorted(counts["by_licence"].items())))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, sources: Sequence[Source] = SOURCES) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.debian_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (content/, style/, heldout/, manifest.json)")
    parser.add_argument("--debs", help="use the .deb files in this folder instead of apt-get download")
    parser.add_argument("--exclude-like", action="append", default=[], metavar="DIR",
                        help="drop images that look like an image under DIR (repeatable)")
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out, debs=args.debs, exclude_like=args.exclude_like, sources=sources)
    except PackageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except files.FileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(_summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

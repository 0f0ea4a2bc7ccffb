"""train.debian_data: the offline data recipe, on tiny .deb files built here with dpkg-deb.

Two packages stand in for the real ones: ``photo-pkg`` (content; a DEP-5 copyright file with two
stanzas, a photo shipped twice at two sizes, one too small, one left out by an exclude pattern) and
``paint-pkg`` (style; an epoch in its version, a non-machine-readable copyright file and a licence
override, a transparent portrait, one picture shipped twice with the same pixels). Nothing here needs
the network, apt or ../shared; a fake ``apt-get`` on PATH covers the download path.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess

import numpy as np
import pytest
from PIL import Image

from adain_jax.io import files
from train import debian_data as dd

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian/Ubuntu)")

PHOTO, PAINT = "photo-pkg", "paint-pkg"
PHOTO_VERSION, PAINT_VERSION = "1.0-1", "2:3.0-1"
DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: photos

Files: *
Copyright: 2024 Photo Team
License: CC0-1.0

Files: backgrounds/photo1*
Copyright: 2024 Someone Else
           2025 Another One
License: CC-BY-4.0
 You must give appropriate credit.

License: CC0-1.0
 No rights reserved.
"""
SOURCES = (
    dd.Source(PHOTO, PHOTO_VERSION, "content", ("usr/share/backgrounds/*",),
              exclude=("usr/share/backgrounds/logo.png",)),
    dd.Source(PAINT, PAINT_VERSION, "style", ("usr/share/paint/**",),
              licence="GPL-2+", copyright="2024 The Painters"),
)


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth random picture: the same seed at another size is the same picture rescaled."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def build_deb(tmp: pathlib.Path, package: str, version: str, contents: dict[str, object],
              out: pathlib.Path) -> pathlib.Path:
    root = tmp / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test package\n")
    for rel, value in contents.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Image.Image):
            value.save(path)
        else:
            path.write_bytes(value if isinstance(value, bytes) else value.encode())
    deb = out / f"{package}_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def portrait() -> Image.Image:
    """RGBA 400x400, opaque 300x280 picture at (50, 60), a faint halo, transparent elsewhere."""
    canvas = np.zeros((400, 400, 4), dtype=np.uint8)
    canvas[60:340, 50:350, :3] = np.asarray(picture(99, (300, 280)))
    canvas[60:340, 50:350, 3] = 255
    canvas[20:40, 20:380, :3], canvas[20:40, 20:380, 3] = 255, 40  # below the opacity cut: cropped away
    return Image.fromarray(canvas, "RGBA")


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("debs-src")
    out = tmp_path_factory.mktemp("debs")
    photos: dict[str, object] = {f"usr/share/backgrounds/photo{i:02d}.jpg": picture(i, (300, 280)) for i in range(12)}
    photos["usr/share/backgrounds/photo03-big.png"] = picture(3, (600, 560))  # the same photo, larger
    photos["usr/share/backgrounds/tiny.jpg"] = picture(50, (100, 80))  # too small
    photos["usr/share/backgrounds/logo.png"] = picture(51, (300, 300))  # excluded by pattern
    photos["usr/share/backgrounds/README"] = "not an image"
    photos[f"usr/share/doc/{PHOTO}/copyright"] = DEP5
    build_deb(tmp, PHOTO, PHOTO_VERSION, photos, out)
    paints: dict[str, object] = {f"usr/share/paint/scene{i:02d}.png": picture(100 + i, (320, 300)) for i in range(11)}
    paints["usr/share/paint/copy/scene02.bmp"] = picture(102, (320, 300))  # same pixels as scene02.png
    paints["usr/share/paint/portraits/hero.png"] = portrait()
    paints[f"usr/share/doc/{PAINT}/copyright"] = "Painted by the painters. Free art, see the GPL.\n"
    build_deb(tmp, PAINT, PAINT_VERSION, paints, out)
    return out


def run(out, debs, *extra, sources=SOURCES) -> int:
    argv = ["--out", str(out)] + (["--debs", str(debs)] if debs is not None else []) + list(extra)
    return dd.main(argv, sources=sources)


@pytest.fixture(scope="module")
def built(debs, tmp_path_factory):
    out = tmp_path_factory.mktemp("open") / "out"
    assert run(out, debs) == 0
    return out, json.loads((out / "manifest.json").read_text())


def one_error_line(capsys) -> str:
    """The error: one line, the last on stderr (after the packages' progress lines), and the only one."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and sum(line.startswith("error:") for line in err) == 1 and err[-1].startswith("error:"), err
    return err[-1]


# --------------------------------------------------------------------------- the data set


def test_layout_roles_splits_and_counts(built):
    out, manifest = built
    images = manifest["images"]
    by = collections.Counter((r["role"], r["split"]) for r in images)
    # 12 photos (photo03 kept once) and 12 paintings (scene02 kept once, the portrait): at least 8 held out.
    assert by == {("content", "train"): 4, ("content", "heldout"): 8, ("style", "train"): 4, ("style", "heldout"): 8}
    assert manifest["counts"]["by_role"] == {"content": {"train": 4, "heldout": 8}, "style": {"train": 4, "heldout": 8}}
    assert manifest["counts"]["by_package"] == {PHOTO: {"content": {"train": 4, "heldout": 8}},
                                                PAINT: {"style": {"train": 4, "heldout": 8}}}
    on_disk = sorted(p.relative_to(out).as_posix() for folder in ("content", "style", "heldout")
                     for p in (out / folder).rglob("*") if p.is_file())
    assert on_disk == sorted(r["path"] for r in images)  # the training folders hold only training images
    for r in images:
        folder = r["role"] if r["split"] == "train" else f"heldout/{r['role']}"
        name = r["path"].split("/")[-1]
        assert r["path"] == f"{folder}/{name}" and name.startswith(r["package"] + "__") and name.endswith(".jpg")
    assert len({r["path"].split("/")[-1] for r in images}) == len(images)
    assert (out / "SOURCES.md").is_file() and f"## {PAINT} {PAINT_VERSION}" in (out / "SOURCES.md").read_text()


def test_images_are_rgb_jpegs_within_the_size_rules_and_match_the_manifest(built):
    out, manifest = built
    for r in manifest["images"]:
        data = (out / r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        same_role = [x["sha256"] for x in manifest["images"] if x["role"] == r["role"]]
        assert (r["split"] == "heldout") == (r["sha256"] in dd.choose_heldout(same_role))
        with Image.open(out / r["path"]) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert dd.MIN_SHORT_SIDE <= min(image.size) <= dd.MAX_SHORT_SIDE and list(image.size) == r["size"]
    big = next(r for r in manifest["images"] if r["source_path"].endswith("photo03-big.png"))
    assert big["original_size"] == [600, 560] and big["size"] == [548, 512]  # short side 512, LANCZOS


def test_duplicates_small_and_excluded_files_are_dropped(built):
    _, manifest = built
    kept = {r["source_path"].split("/", 2)[-1] for r in manifest["images"]}
    dropped = {d["path"].split("/", 2)[-1]: d["reason"] for d in manifest["dropped"]}
    assert "backgrounds/photo03-big.png" in kept and "backgrounds/photo03.jpg" not in kept
    assert dropped["backgrounds/photo03.jpg"] == f"near duplicate of {PHOTO}:usr/share/backgrounds/photo03-big.png"
    assert dropped["backgrounds/tiny.jpg"] == "short side 80 < 256 px"
    assert sum("exact duplicate of" in reason for reason in dropped.values()) == 1
    assert ("paint/scene02.png" in kept) != ("paint/copy/scene02.bmp" in kept)
    assert not any(name.endswith(("logo.png", "README")) for name in kept | set(dropped))
    assert len(kept) == 24 and len(dropped) == 3


def test_transparent_portrait_is_cropped_to_its_opaque_region_on_its_mean_colour(built):
    out, manifest = built
    hero = next(r for r in manifest["images"] if r["source_path"].endswith("hero.png"))
    assert hero["original_size"] == [400, 400] and hero["size"] == [300, 280]
    with Image.open(out / hero["path"]) as image:
        assert image.size == (300, 280)
    prepared = dd.prepare_image(portrait())
    assert prepared.mode == "RGB" and prepared.size == (300, 280)
    # The faint halo (alpha 40) is outside the crop; fully transparent pixels would take the mean colour.
    rgba = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", (300, 260), (200, 100, 0, 255)), (0, 0))
    rgba.paste(Image.new("RGBA", (100, 40), (0, 0, 0, 0)), (0, 0))
    flat = np.asarray(dd.prepare_image(rgba))
    assert flat.shape == (260, 300, 3) and (flat == (200, 100, 0)).all()


def test_licences_come_from_dep5_stanzas_or_the_override(built):
    _, manifest = built
    for r in manifest["images"]:
        name = r["source_path"].rsplit("/", 1)[-1]
        if r["package"] == PAINT:
            assert (r["licence"], r["copyright"]) == ("GPL-2+", "2024 The Painters")
        elif name.startswith("photo1"):
            assert (r["licence"], r["copyright"]) == ("CC-BY-4.0", "2024 Someone Else 2025 Another One")
        else:
            assert (r["licence"], r["copyright"]) == ("CC0-1.0", "2024 Photo Team")
        assert r["version"] == {PHOTO: PHOTO_VERSION, PAINT: PAINT_VERSION}[r["package"]]
        assert set(r) == {"split", "role", "path", "package", "version", "source_path", "licence", "copyright",
                          "sha256", "size", "original_size"}
    assert manifest["counts"]["by_licence"] == {"CC-BY-4.0": 2, "CC0-1.0": 10, "GPL-2+": 12}
    assert manifest["counts"]["by_split"] == {"train": 8, "heldout": 16} and manifest["counts"]["total"] == 24


# --------------------------------------------------------------------------- determinism and resume


def test_two_runs_give_byte_identical_manifests_and_a_finished_rerun_changes_nothing(built, debs, tmp_path):
    out, _ = built
    reference = (out / "manifest.json").read_bytes()
    assert run(tmp_path / "again", debs) == 0
    assert (tmp_path / "again" / "manifest.json").read_bytes() == reference
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "content").iterdir()}
    assert run(out, debs) == 0
    assert (out / "manifest.json").read_bytes() == reference
    assert {p: p.stat().st_mtime_ns for p in (out / "content").iterdir()} == mtimes


def test_an_interrupted_run_resumes_and_ends_with_the_same_manifest(built, debs, tmp_path, monkeypatch):
    reference = (built[0] / "manifest.json").read_bytes()
    out = tmp_path / "out"
    real_write = files.write_atomically

    def interrupt_after(n, counts=lambda path: True):
        calls = []

        def write(path, *args, **kwargs):
            if counts(pathlib.Path(path)):
                calls.append(path)
                if len(calls) > n:
                    raise KeyboardInterrupt
            return real_write(path, *args, **kwargs)
        return write

    monkeypatch.setattr(files, "write_atomically", interrupt_after(12))  # 2 unpack markers, 5 staged images
    with pytest.raises(KeyboardInterrupt):
        dd.build(out, debs=debs, sources=SOURCES)
    assert not (out / "manifest.json").exists() and not (out / "content").exists()

    # The second try analyses only what the first did not finish, then stops in the output phase.
    analysed = []
    real_analyse = dd._analyse
    monkeypatch.setattr(dd, "_analyse", lambda path: analysed.append(path) or real_analyse(path))
    output = lambda path: path.relative_to(out).parts[0] in ("content", "style", "heldout")  # noqa: E731
    monkeypatch.setattr(files, "write_atomically", interrupt_after(3, output))
    with pytest.raises(KeyboardInterrupt):
        dd.build(out, debs=debs, sources=SOURCES)
    assert len(analysed) == 27 - 5 and not (out / "manifest.json").exists()
    assert len([p for p in out.rglob("*.jpg") if output(p) and not p.name.startswith(".")]) == 3

    monkeypatch.setattr(files, "write_atomically", real_write)
    analysed.clear()
    assert run(out, debs) == 0 and analysed == []
    assert (out / "manifest.json").read_bytes() == reference


def test_a_stale_unpack_is_redone_and_stale_outputs_are_removed(built, debs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built[0], out)
    (out / ".cache" / "unpacked" / f"{PHOTO}.done").unlink()  # as if killed during dpkg -x
    stray = out / "content" / "stray.jpg"
    stray.write_bytes(b"not from this recipe")
    assert run(out, debs) == 0
    assert not stray.exists() and (out / ".cache" / "unpacked" / f"{PHOTO}.done").is_file()
    assert (out / "manifest.json").read_bytes() == (built[0] / "manifest.json").read_bytes()


# --------------------------------------------------------------------------- --exclude-like


def test_exclude_like_drops_images_that_look_like_the_reference_ones(debs, tmp_path):
    references = tmp_path / "shared" / "content"
    references.mkdir(parents=True)
    picture(5, (450, 420)).save(references / "lookalike.jpg")  # photo05, rescaled and re-encoded
    picture(77, (300, 300)).save(references / "unrelated.png")
    (references / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    assert run(out, debs, "--exclude-like", str(tmp_path / "shared")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    dropped = {d["path"].rsplit("/", 1)[-1]: d["reason"] for d in manifest["dropped"]}
    assert dropped["photo05.jpg"] == "looks like excluded image shared/content/lookalike.jpg"
    assert manifest["counts"]["by_role"]["content"] == {"train": 3, "heldout": 8}
    assert manifest["exclude_like"] == {"folders": [str(tmp_path / "shared")], "images": 2}


# --------------------------------------------------------------------------- errors


def test_no_apt_get_and_no_debs_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert run(tmp_path / "out", None) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: apt-get not found: ") and "--debs DIR" in line and "Debian/Ubuntu" in line
    assert not (tmp_path / "out").exists()


def test_a_corrupt_or_truncated_deb_names_the_package(debs, tmp_path, capsys):
    for name, damage in (("corrupt", lambda data: b"!<arch>\nnot really a deb"),
                         ("truncated", lambda data: data[: len(data) * 2 // 3])):
        folder = tmp_path / name
        shutil.copytree(debs, folder)
        deb = next(folder.glob(f"{PHOTO}_*.deb"))
        deb.write_bytes(damage(deb.read_bytes()))
        out = tmp_path / f"out-{name}"
        assert run(out, folder) == 1
        line = one_error_line(capsys)
        assert line.startswith(f"error: {PHOTO}: ") and str(deb) in line, line
        assert not (out / "manifest.json").exists() and not (out / "content").exists()


def test_a_missing_deb_or_a_package_without_matching_images_is_an_error(debs, tmp_path, capsys):
    assert run(tmp_path / "a", debs, sources=(dd.Source(PHOTO, "9.9-9", "content", ("*",)),)) == 1
    assert one_error_line(capsys) == f"error: {PHOTO}: no .deb of version 9.9-9 in {debs}"
    nothing = (dd.Source(PHOTO, PHOTO_VERSION, "content", ("usr/share/nothing/*",)),)
    assert run(tmp_path / "b", debs, sources=nothing) == 1
    assert one_error_line(capsys) == f"error: {PHOTO}: no image files match usr/share/nothing/*"
    assert not (tmp_path / "b" / "manifest.json").exists()


FAKE_APT = """#!/bin/sh
# apt-get download NAME=VERSION, served from $FAKE_APT_DEBS
[ "$1" = download ] || exit 100
name=${2%%=*}
for f in "$FAKE_APT_DEBS/${name}"_*.deb; do
    if [ -e "$f" ]; then cp "$f" .; exit 0; fi
done
echo "E: Unable to locate package $name" >&2
exit 100
"""


def test_download_with_apt_get_is_cached_and_a_failed_download_names_the_package(
        built, debs, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT_DEBS", str(debs))
    out = tmp_path / "out"
    assert run(out, None) == 0
    assert sorted(p.name for p in (out / ".cache" / "debs").glob("*.deb")) == sorted(p.name for p in debs.glob("*.deb"))
    assert (out / "manifest.json").read_bytes() == (built[0] / "manifest.json").read_bytes()
    monkeypatch.setenv("FAKE_APT_DEBS", str(tmp_path / "nowhere"))  # cached: apt-get is not asked again
    assert run(out, None) == 0
    capsys.readouterr()
    missing = (dd.Source("missing-pkg", "1.0", "content", ("*",)),)
    assert run(tmp_path / "out2", None, sources=missing) == 1
    assert one_error_line(capsys) == ("error: missing-pkg: apt-get download missing-pkg=1.0 failed: "
                                      "E: Unable to locate package missing-pkg")


# --------------------------------------------------------------------------- pure helpers


def test_glob_patterns():
    match = lambda pattern, path: bool(dd.glob_to_regex(pattern).match(path))  # noqa: E731
    assert match("a/*", "a/b.jpg") and not match("a/*", "a/b/c.jpg")
    assert match("a/**", "a/b/c.jpg") and match("a/**/c.jpg", "a/c.jpg") and match("a/**/c.jpg", "a/x/y/c.jpg")
    assert match("w/*/contents/images*/*", "w/Kite/contents/images_dark/1.jpg")
    assert match("a/[bc].jpg", "a/c.jpg") and not match("a/?.jpg", "a/bc.jpg") and not match("a/b.jpg", "a/bxjpg")
    assert dd.output_name("pkg", "Kite/contents/images/2560x1600.jpg") == "pkg__Kite_contents_images_2560x1600.jpg"
    assert dd.output_name("pkg", "a b+c.v2.png") == "pkg__a_b_c.v2.jpg"


def test_dep5_parsing_tails_upstream_prefix_and_last_stanza_wins():
    stanzas = dd.parse_copyright(DEP5 + "\nFiles: 16.04/x.jpg\nCopyright: X\nLicense: CC-BY-SA-4.0\n")
    assert [s["license"] for s in stanzas] == ["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0"]
    assert dd.licence_for(stanzas, "usr/share/backgrounds/photo10.jpg") == (
        "CC-BY-4.0", "2024 Someone Else 2025 Another One")
    assert dd.licence_for(stanzas, "usr/share/backgrounds/photo01.jpg") == ("CC0-1.0", "2024 Photo Team")
    assert dd.licence_for(stanzas, "usr/share/backgrounds/x.jpg") == ("CC0-1.0", "2024 Photo Team")
    upstream = ("usr/share/backgrounds/", "16.04/")
    assert dd.licence_for(stanzas, "usr/share/backgrounds/x.jpg", upstream) == ("CC-BY-SA-4.0", "X")
    assert dd.parse_copyright("\n" + DEP5) is not None  # plasma's file starts with an empty line
    assert dd.parse_copyright("This package was debianized by someone.\n\nLicense: GPL\n") is None


def test_heldout_choice_is_about_a_tenth_and_at_least_eight():
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    chosen = dd.choose_heldout(shas)
    assert chosen == {s for s in shas if int(s[:8], 16) % 10 == 0} and 15 <= len(chosen) <= 45
    assert len(dd.choose_heldout(shas[:20])) == 8 and dd.choose_heldout(shas[:5]) == set(shas[:5])
    assert dd.choose_heldout(list(reversed(shas))) == chosen


def test_near_duplicates_need_both_the_hash_and_the_thumbnail():
    a, b = picture(1, (300, 280)), picture(1, (600, 560)).resize((300, 280), Image.Resampling.LANCZOS)
    key = lambda image: (dd.dhash(image), dd.thumbnail(image))  # noqa: E731
    assert dd.is_near(key(a), key(b)) and not dd.is_near(key(a), key(picture(2, (300, 280))))
    framed = [np.array(picture(9, (300, 280))) for _ in range(2)]
    framed[1][60:220, 60:240] = np.asarray(picture(10, (180, 160)))  # same frame, another centre
    one, two = (Image.fromarray(f) for f in framed)
    assert not dd.is_near(key(one), key(two))

"""adain_jax.io.files: output folders, atomic writes (all or nothing) and the leftovers of killed writes."""

from __future__ import annotations

import os
import pickle

import pytest

from adain_jax.io import files


def test_write_atomically_writes_all_at_once_and_makes_the_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    files.write_atomically(target, lambda handle: handle.write(b"hello"))
    assert target.read_bytes() == b"hello" and os.listdir(target.parent) == ["out.bin"]


def test_a_failed_or_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(files.FileError) as info:
        files.write_atomically(target, broken, what="picture")
    assert str(info.value) == f"{target}: could not write the picture: No space left on device"

    def interrupted(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.write_atomically(target, interrupted)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_prepare_output_names_what_is_in_the_way_with_the_callers_error(tmp_path):
    class VideoLikeError(files.FileError):
        pass

    (tmp_path / "file").write_text("x")
    with pytest.raises(VideoLikeError, match="is a file, not a directory"):
        files.prepare_output(tmp_path / "file" / "sub" / "o.mp4", VideoLikeError)
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(files.FileError, match="is a directory"):
        files.prepare_output(tmp_path / "dir.mp4")


def test_stale_temporaries_of_one_output_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "img.png"
    stale = files.temporary_name(target, "0123abcd")
    other = files.temporary_name(tmp_path / "other.png", "0123abcd")
    for path in (stale, other, target):
        path.write_bytes(b"x")
    assert stale.name.startswith(".img.png.") and stale.name.endswith(".tmp")
    files.remove_stale_temporaries(target)
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, "img.png"])


def test_file_error_is_one_line_and_pickles():
    error = files.FileError("a/b.png", "two\nlines")
    assert str(error) == "a/b.png: two lines"
    again = pickle.loads(pickle.dumps(error))
    assert (again.path, again.problem) == ("a/b.png", "two lines")

"""Output files, for images and videos alike: the one-line file error, output folders, atomic writes.

`write_atomically` is how every output reaches its final name: the bytes go to a hidden temporary
file in the destination's folder (`temporary_name`), are fsynced, and are renamed over the
destination with ``os.replace``; on any failure the temporary file is removed and an existing file
is left untouched, so there is never a partial or empty output. `prepare_output` makes the folders
first and names what is in the way.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Callable
from typing import BinaryIO

_TEMPORARY_SUFFIX = ".tmp"
_TRIES = 100  # random temporary names to try before giving up


class FileError(ValueError):
    """A problem with one input or output file, as one line ``f"{path}: {problem}"`` (images, videos)."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        # Pillow's messages sometimes span lines; callers print this as a single line.
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):
        # The default exception pickling replays ``args`` (the joined message) into
        # __init__, which takes two arguments; keep it picklable for multiprocessing.
        return (type(self), (self.path, self.problem))


def prepare_output(path: str | os.PathLike, error: type[FileError] = FileError) -> None:
    """Create the folders an output file needs; ``error(path, ...)`` naming what is in the way.

    A file where a folder should be, a folder that cannot be made, or ``path`` itself being a
    directory each give one line (images and videos alike).
    """
    name = os.fspath(path)
    parent = pathlib.Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in (parent, *parent.parents) if os.path.lexists(p)), None)
        reason = e.strerror or str(e)
        if blocker is not None and not os.path.isdir(blocker):
            reason = f"{os.fspath(blocker)} is a file, not a directory"
        raise error(name, f"cannot create the output directory {os.fspath(parent)}: {reason}") from e
    if os.path.isdir(path):  # os.path: an unreadable directory must reach the clearer error below
        raise error(name, "is a directory")


def temporary_name(path: pathlib.Path, token: str) -> pathlib.Path:
    """The hidden temporary file `write_atomically` writes before renaming it to ``path``."""
    return path.parent / f".{path.name}.{token}{_TEMPORARY_SUFFIX}"


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Removes the temporary files a killed process left while writing ``path`` (call it only when
    no other process writes ``path``)."""
    path = pathlib.Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(temporary_name(path, "*").name):
            stale.unlink(missing_ok=True)


def _open_temporary(path: pathlib.Path, error: type[FileError]) -> tuple[int, pathlib.Path]:
    """An exclusively created temporary file next to ``path`` -> (descriptor, its path).

    O_EXCL with a random name rather than tempfile.mkstemp: the file gets the usual 0o666 & ~umask
    permissions instead of mkstemp's 0o600.
    """
    name, parent = os.fspath(path), path.parent
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_TRIES):
        temp = temporary_name(path, secrets.token_hex(6))
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
        except PermissionError as e:
            raise error(name, f"cannot write to the directory {os.fspath(parent)}: permission denied") from e
        except OSError as e:
            raise error(name, f"cannot write to the directory {os.fspath(parent)}: {e.strerror or e}") from e
    raise error(name, "could not create a temporary file")  # pragma: no cover - 100 collisions of 48-bit names


def _fill_and_rename(fd: int, temp: pathlib.Path, path: pathlib.Path, write: Callable[[BinaryIO], None],
                     error: type[FileError], what: str) -> None:
    """Writes through ``write``, fsyncs and renames ``temp`` to ``path``; on failure removes ``temp``."""
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as e:
        temp.unlink(missing_ok=True)
        if not isinstance(e, Exception) or isinstance(e, MemoryError):
            raise  # KeyboardInterrupt and friends: cleaned up, otherwise untouched
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise error(os.fspath(path), f"could not write the {what}: {detail}") from e


def _sync_directory(directory: pathlib.Path) -> None:
    """Makes a rename in ``directory`` durable; not possible (or needed) everywhere."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None], *,
                     error: type[FileError] = FileError, what: str = "file") -> None:
    """Writes ``path`` through ``write(handle)`` all at once or not at all (module docstring).

    Missing folders are created. Every failure is ``error(path, ...)`` (``what`` names the content
    in its message, e.g. "image"), except KeyboardInterrupt and MemoryError, which are re-raised
    after the clean-up.
    """
    path = pathlib.Path(path)
    prepare_output(path, error)
    fd, temp = _open_temporary(path, error)
    _fill_and_rename(fd, temp, path, write, error, what)
    _sync_directory(path.parent)

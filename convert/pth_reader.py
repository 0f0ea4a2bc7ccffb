"""Read PyTorch ``torch.save`` state dicts into numpy arrays, without importing torch.

(Over 400 lines on purpose: both serialisations share the restricted unpickler, the storage table
and the per-tensor checks that name the file, tensor and problem; split, each half would need them all.)

The official AdaIN weights (``vgg_normalised.pth``, ``decoder.pth``) are ``torch.save`` pickles of an
``OrderedDict`` of tensors. Both on-disk serialisations are understood:

* **legacy** (``_use_new_zipfile_serialization=False``; the official files): a pickled magic number,
  a pickled protocol version (1001), a pickled header dict, the pickled state dict (tensors refer to
  storages by persistent id), a pickled list of storage keys, then every storage in that order as an
  8-byte little-endian element count followed by its raw little-endian data;
* **zip** (the default since PyTorch 1.6): ``<name>/data.pkl`` holds the pickle,
  ``<name>/data/<key>`` the raw bytes of each storage, ``<name>/byteorder`` their byte order.

The pickles are read by a restricted unpickler that admits only the globals a state dict needs
(``collections.OrderedDict``, the ``torch._utils._rebuild_*`` tensor constructors, the storage type
names and dtype names), each mapped to an inert stand-in defined here, so a weight file can never
run code. Storages are read straight into numpy buffers, and each tensor's size, stride and storage
offset are then applied to give C-contiguous arrays that own their memory.

Every failure is a :class:`WeightFileError` whose message is one line naming the file, the tensor
when known, and the problem.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from typing import Any, BinaryIO, Iterable

import numpy as np

__all__ = ["WeightFileError", "read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# LONG1 opcode, 10 bytes, then the magic number: how every pickle protocol >= 2 spells it.
_LEGACY_MAGIC_OPS = b"\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
# The first pickle of a legacy file as torch.save writes it with its default protocol (2).
_LEGACY_PREFIX = b"\x80\x02" + _LEGACY_MAGIC_OPS + b"."
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_CHUNK = 1 << 22  # bytes per read when copying zip members, to bound temporary memory


class WeightFileError(ValueError):
    """A weight file that cannot be read; one clear line: ``"{path}: {tensor}: {problem}"``.

    ``tensor`` (the state-dict key concerned) may be None, giving ``"{path}: {problem}"``.
    """

    def __init__(self, path, problem, tensor=None):
        problem = " ".join(str(problem).split("\n"))
        super().__init__(path, problem, tensor)  # args kept so the exception survives pickling
        self.path = path
        self.problem = problem
        self.tensor = tensor

    def __str__(self) -> str:
        if self.tensor is None:
            return f"{self.path}: {self.problem}"
        return f"{self.path}: {self.tensor}: {self.problem}"


def read_state_dict(path) -> dict[str, np.ndarray]:
    """Reads a ``torch.save``'d state dict (legacy or zip serialisation) into numpy arrays.

    Keys come in file order; arrays have the stored dtype (float32 stays float32, float64 stays
    float64, ...) with the stored size, stride and storage offset applied, and are C-contiguous and
    own their memory. Raises :class:`WeightFileError` for anything that is not a readable state dict.
    """
    try:
        return _read(path)
    except WeightFileError:
        raise
    except _Fail as e:
        raise WeightFileError(path, e.problem, e.tensor) from e
    except MemoryError as e:
        raise WeightFileError(path, "not enough memory to hold the tensors") from e
    except Exception as e:  # noqa: BLE001 - the contract is: only WeightFileError ever escapes
        raise WeightFileError(path, f"corrupt file ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------------------------
# Internal failures; read_state_dict turns them into WeightFileError (it alone knows the path).


class _Fail(Exception):
    def __init__(self, problem: str, tensor: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.tensor = tensor


class _RefusedGlobal(Exception):
    """Raised by the unpickler; the reader then words the refusal (module or code)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


# --------------------------------------------------------------------------------------------
# dtypes

# Legacy typed storage classes (what torch pickles as the storage type) -> element dtype name.
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",  # raw bytes; _rebuild_tensor_v3 then names the element dtype
}

# torch dtype names that may appear as globals (``torch.uint16``) -> numpy dtype name, None where
# numpy cannot represent them. Listing the unsupported ones lets the error name the dtype rather
# than refuse it as foreign code.
_TORCH_DTYPES: dict[str, str | None] = {
    "float64": "float64", "double": "float64",
    "float32": "float32", "float": "float32",
    "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
    "complex64": "complex64", "cfloat": "complex64",
    "complex128": "complex128", "cdouble": "complex128",
    **{name: None for name in (
        "complex32", "chalf", "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz",
        "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "bits8", "bits16", "bits1x8",
        "bits2x4", "bits4x2", "qint8", "qint32", "quint8", "quint4x2", "quint2x4",
    )},
}


def _numpy_dtype(name: str | None) -> np.dtype | None:
    if name is None:
        return None
    if name == "bfloat16":
        # numpy has no bfloat16; ml_dtypes (a JAX dependency) provides the one JAX uses.
        try:
            import ml_dtypes
        except ImportError:
            return None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co. Deliberately not callable."""

    __slots__ = ("torch_name", "dtype_name")

    def __init__(self, torch_name: str, dtype_name: str | None):
        self.torch_name = torch_name
        self.dtype_name = dtype_name

    def __setstate__(self, state):
        raise _Fail("malformed pickle: it tries to set the state of a storage type")


class _DType:
    """Stand-in for a ``torch.<dtype>`` global."""

    __slots__ = ("torch_name", "dtype_name")

    def __init__(self, torch_name: str, dtype_name: str | None):
        self.torch_name = torch_name
        self.dtype_name = dtype_name

    def __setstate__(self, state):
        raise _Fail("malformed pickle: it tries to set the state of a dtype")


# --------------------------------------------------------------------------------------------
# What the unpickler builds instead of torch objects


class _Storage:
    """One storage of the file (legacy: a root storage; zip: one ``data/<key>`` member)."""

    __slots__ = ("key", "type", "numel", "users")

    def __init__(self, key: str, storage_type: _StorageType, numel: int):
        self.key = key
        self.type = storage_type
        self.numel = numel
        self.users: list[tuple[str, _TensorRecord]] = []

    def itemsize(self) -> int | None:
        dtype = _numpy_dtype(self.type.dtype_name)
        return None if dtype is None else dtype.itemsize

    def nbytes(self) -> int | None:
        itemsize = self.itemsize()
        return None if itemsize is None else self.numel * itemsize


class _StorageRef:
    """What a persistent id resolves to: a window of a storage (legacy files could save views)."""

    __slots__ = ("storage", "offset", "numel")

    def __init__(self, storage: _Storage, offset: int, numel: int):
        self.storage = storage
        self.offset = offset  # in elements of the storage's type
        self.numel = numel

    def __setstate__(self, state):
        raise _Fail("malformed pickle: it tries to set the state of a storage")


class _TensorRecord:
    """The arguments of a ``torch._utils._rebuild_tensor*`` call, checked once the key is known."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype", "metadata", "dtype_name")

    def __init__(self, storage, offset, size, stride, dtype=None, metadata=None):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride
        self.dtype = dtype  # a _DType for _rebuild_tensor_v3, else None (the storage's type)
        self.metadata = metadata
        self.dtype_name: str | None = None  # filled in by _check_record

    def __setstate__(self, state):
        # torch sets state only on tensor subclasses, which a state dict never holds.
        raise _Fail("malformed pickle: it tries to set the state of a tensor")


def _rebuild_tensor(*args):
    if len(args) != 4:
        raise _Fail(f"malformed tensor record: _rebuild_tensor got {len(args)} arguments, not 4")
    return _TensorRecord(*args)


def _rebuild_tensor_v2(*args):
    # (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if len(args) not in (6, 7):
        raise _Fail(f"malformed tensor record: _rebuild_tensor_v2 got {len(args)} arguments, not 6 or 7")
    metadata = args[6] if len(args) == 7 else None
    return _TensorRecord(args[0], args[1], args[2], args[3], metadata=metadata)


def _rebuild_tensor_v3(*args):
    # (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
    if len(args) not in (7, 8):
        raise _Fail(f"malformed tensor record: _rebuild_tensor_v3 got {len(args)} arguments, not 7 or 8")
    if not isinstance(args[6], _DType):
        raise _Fail(f"malformed tensor record: _rebuild_tensor_v3 got dtype {args[6]!r}")
    metadata = args[7] if len(args) == 8 else None
    return _TensorRecord(args[0], args[1], args[2], args[3], dtype=args[6], metadata=metadata)


def _rebuild_parameter(*args):
    # nn.Parameter(data, requires_grad, backward_hooks): the data is all a state dict needs.
    if len(args) != 3 or not isinstance(args[0], _TensorRecord):
        raise _Fail("malformed parameter record")
    return args[0]


_REBUILDERS = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor_v3": _rebuild_tensor_v3,
    "_rebuild_parameter": _rebuild_parameter,
}

# Protocol-2 pickles spell Python 3 modules the Python 2 way; show and match the Python 3 name.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _global_name(module: str, name: str) -> str:
    return f"{_PY2_MODULES.get(module, module)}.{name}"


class _Unpickler(pickle.Unpickler):
    """Admits only the globals a state dict needs; everything it returns is inert."""

    def __init__(self, file: BinaryIO, storages: _StorageTable | None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Fail("malformed pickle: a global with a non-string name")
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILDERS:
            return _REBUILDERS[name]
        # torch's own loader maps any "...Storage" global to a storage type, whatever the module
        # (torch, torch.storage for UntypedStorage, torch.cuda for storages saved from a GPU).
        if module in ("torch", "torch.storage", "torch.cuda") and name.endswith("Storage") and name.isidentifier():
            return _StorageType(f"{module}.{name}", _STORAGE_DTYPES.get(name))
        if module == "torch" and name in _TORCH_DTYPES:
            return _DType(f"torch.{name}", _TORCH_DTYPES[name])
        raise _RefusedGlobal(_global_name(module, name))

    def persistent_load(self, pid):
        if self._storages is None:
            raise _Fail("malformed file: a persistent id outside the state dict pickle")
        return self._storages.resolve(pid)


def _text(value: Any) -> Any:
    # Pickles written by Python 2 hold these identifiers as bytes.
    return value.decode("ascii") if isinstance(value, bytes) else value


def _is_int(value: Any) -> bool:
    return type(value) is int


class _StorageTable:
    """Resolves ``('storage', type, key, location, numel[, view])`` persistent ids."""

    def __init__(self, legacy: bool):
        self.legacy = legacy
        self.by_key: dict[str, _Storage] = {}

    def resolve(self, pid: Any) -> _StorageRef:
        if not isinstance(pid, tuple) or not pid:
            raise _Fail(f"malformed pickle: unexpected persistent id {_short_repr(pid)}")
        kind = _text(pid[0])
        if kind == "module":
            # Legacy torch.save(model) records each module class this way.
            raise _Fail("holds a pickled nn.Module, not a state dict; save model.state_dict()")
        expected = 6 if self.legacy else 5
        if kind != "storage" or len(pid) != expected:
            raise _Fail(f"malformed pickle: unexpected persistent id {_short_repr(pid)}")
        storage_type, key, location, numel = pid[1], _text(pid[2]), _text(pid[3]), pid[4]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise _Fail(f"malformed storage record {_short_repr(pid)}")
        if not isinstance(location, str) or not _is_int(numel) or numel < 0:
            raise _Fail(f"malformed storage record {_short_repr(pid)}")
        storage = self.by_key.get(key)
        if storage is None:
            storage = self.by_key[key] = _Storage(key, storage_type, numel)
        elif storage.type.dtype_name != storage_type.dtype_name or storage.numel != numel:
            raise _Fail(f"storage {key!r} is recorded twice with different types or sizes: corrupt file")
        view = pid[5] if self.legacy else None
        if view is None:
            return _StorageRef(storage, 0, numel)
        # Pre-2018 torch could save a storage view as (view_key, offset, size) into a root storage.
        if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1]) and _is_int(view[2])):
            raise _Fail(f"malformed storage view record {_short_repr(view)}")
        offset, size = view[1], view[2]
        if offset < 0 or size < 0 or offset + size > numel:
            raise _Fail(f"storage view {_short_repr(view)} lies outside its storage of {numel} elements")
        return _StorageRef(storage, offset, size)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Reading


def _read(path) -> dict[str, np.ndarray]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise _Fail("no such file") from None
    except IsADirectoryError:
        raise _Fail("is a directory, not a weight file") from None
    except PermissionError:
        raise _Fail("cannot read the file: permission denied") from None
    except OSError as e:
        raise _Fail(f"cannot read the file: {e.strerror or e}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(64)
        f.seek(0)
        if not head:
            raise _Fail("empty file (0 bytes), not a PyTorch weight file")
        if head.startswith(_ZIP_LOCAL_HEADER) or (len(head) < 4 and _ZIP_LOCAL_HEADER.startswith(head)):
            return _read_zip(f)
        if head[:1] == b"\x80" and _LEGACY_MAGIC_OPS in head:
            return _read_legacy(f, size)
        if len(head) < len(_LEGACY_PREFIX) and _LEGACY_PREFIX.startswith(head):
            raise _Fail(f"truncated: only {len(head)} bytes, the file ends inside the magic number")
        if head[:1] == b"\x80":
            raise _Fail("not a PyTorch weight file: a pickle without torch.save's magic number")
        tail = f.read(512)[257:262]
        if tail == b"ustar":
            raise _Fail("is a tar archive (the pre-1.0 torch.save format), which is not supported; "
                        "re-save it with a recent PyTorch")
        raise _Fail("not a PyTorch weight file: neither a torch.save zip archive nor a legacy "
                    f"torch.save stream (it starts with {head[:8]!r})")


def _load_pickle(f: BinaryIO, what: str, storages: _StorageTable | None = None) -> Any:
    """One pickle from ``f``; ``what`` names it in errors."""
    start = f.tell()
    try:
        return _Unpickler(f, storages).load()
    except _RefusedGlobal as refused:
        f.seek(start)
        raise _Fail(_refusal(refused.name, f)) from None
    except EOFError:
        raise _Fail(f"truncated: the file ends inside the {what}") from None
    except _Fail:
        raise
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise _Fail(f"truncated: the file ends inside the {what}") from None
        raise _Fail(f"corrupt {what} ({e})") from None
    except Exception as e:  # noqa: BLE001 - a damaged pickle can fail in many ways
        raise _Fail(f"corrupt {what} ({type(e).__name__}: {e})") from None


def _read_legacy(f: BinaryIO, file_size: int) -> dict[str, np.ndarray]:
    magic = _load_pickle(f, "magic number")
    if magic != _LEGACY_MAGIC:
        raise _Fail("not a PyTorch weight file: wrong magic number")
    protocol = _load_pickle(f, "protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise _Fail(f"unsupported legacy torch.save protocol version {_short_repr(protocol)} (expected 1001)")
    header = _load_pickle(f, "header")
    if not (isinstance(header, dict) and isinstance(header.get("little_endian"), bool)
            and isinstance(header.get("type_sizes"), dict)):
        raise _Fail(f"malformed header {_short_repr(header)}")
    # The header is informational. torch writes storage counts and data little-endian on every
    # machine and sizes elements by dtype: a LongStorage is int64 although the header says long is
    # 4 bytes (torch measures struct "=l", a standard size, so every file says 4, not only files
    # from Windows). Its loader ignores the header; doing the same reads every file torch can.

    table = _StorageTable(legacy=True)
    obj = _load_pickle(f, "pickled state dict", table)
    entries = _state_dict_entries(obj)
    keys = _load_pickle(f, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(_text(k), str) for k in keys):
        raise _Fail(f"malformed storage key list {_short_repr(keys)}")
    keys = [_text(k) for k in keys]
    if len(set(keys)) != len(keys):
        raise _Fail("the storage key list names a storage twice: corrupt file")
    for key in keys:
        if key not in table.by_key:
            raise _Fail(f"the storage key list names storage {key!r}, which no tensor uses: corrupt file")
    order = [table.by_key[key] for key in keys]
    _attach_users(entries)
    for name, record in entries:
        if record.storage.storage.key not in keys:
            raise _Fail(f"its storage {record.storage.storage.key!r} is missing from the file's storage list",
                        name)

    # Every size is known before any data is read, so a short file is reported at once, naming
    # the first tensor whose storage the file cuts off.
    position = f.tell()
    for index, storage in enumerate(order):
        nbytes = storage.nbytes()
        if nbytes is None:
            _unsupported(storage)
        end = position + 8 + nbytes
        if end > file_size:
            present = max(0, file_size - position - 8)
            missing = sum(len(s.users) for s in order[index:])
            raise _Fail(
                f"truncated: the file ends {present} bytes into this tensor's {nbytes} data bytes "
                f"(storage {index + 1} of {len(order)} in file order); {missing} of {len(entries)} "
                f"tensors lack their data ({file_size} of {_total_size(position, order[index:])} bytes present)",
                storage.users[0][0] if storage.users else None,
            )
        position = end

    out: dict[str, np.ndarray | None] = {name: None for name, _ in entries}
    for storage in order:
        first_user = storage.users[0][0] if storage.users else None
        (count,) = struct.unpack("<q", _read_exact(f, 8, storage))
        if count != storage.numel:
            raise _Fail(f"storage {storage.key!r} holds {count} elements but the tensor records say "
                        f"{storage.numel}: corrupt file", first_user)
        _materialise(storage, lambda view, s=storage: _read_into(f, view, s), swap=False, out=out)
    return out  # type: ignore[return-value]


def _total_size(position: int, storages: Iterable[_Storage]) -> int:
    return position + sum(8 + (s.nbytes() or 0) for s in storages)


def _read_exact(f: BinaryIO, n: int, storage: _Storage) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Fail(f"truncated: the file ends inside storage {storage.key!r}",
                    storage.users[0][0] if storage.users else None)
    return data


def _read_into(f: BinaryIO, view: memoryview, storage: _Storage) -> None:
    filled = 0
    while filled < len(view):
        n = f.readinto(view[filled:])
        if not n:
            raise _Fail(f"truncated: the file ends {filled} bytes into the {len(view)} data bytes of "
                        f"storage {storage.key!r}", storage.users[0][0] if storage.users else None)
        filled += n


def _read_zip(f: BinaryIO) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error) as e:
        # Cutting a zip file short removes its central directory at the end.
        raise _Fail(f"truncated or corrupt zip archive ({e})") from None
    with archive:
        names = archive.namelist()
        if not names:
            raise _Fail("not a torch.save file: an empty zip archive")
        # Like torch, take the archive's folder name from its first record (it is the file's stem
        # at save time, so it need not match the current file name).
        prefix = names[0].split("/", 1)[0]
        pkl = f"{prefix}/data.pkl"
        # TorchScript archives hold a data.pkl too, of the scripted module; say what they are.
        if f"{prefix}/constants.pkl" in names or any(n.startswith(f"{prefix}/code/") for n in names):
            raise _Fail("is a TorchScript archive (torch.jit.save), not a torch.save state dict; "
                        "save model.state_dict() with torch.save")
        if pkl not in names:
            raise _Fail(f"not a torch.save file: missing archive member {pkl!r}")
        swap = False
        order_name = f"{prefix}/byteorder"
        if order_name in names:
            order = _zip_member(archive, order_name)
            if order not in (b"little", b"big"):
                raise _Fail(f"unknown byte order {_short_repr(order)} in archive member {order_name!r}")
            swap = order.decode() != _native_order()

        data = _zip_member(archive, pkl)
        table = _StorageTable(legacy=False)
        obj = _load_pickle(io.BytesIO(data), "pickled state dict", table)
        entries = _state_dict_entries(obj)
        _attach_users(entries)

        out: dict[str, np.ndarray | None] = {name: None for name, _ in entries}
        for storage in table.by_key.values():
            first_user = storage.users[0][0] if storage.users else None
            member = f"{prefix}/data/{storage.key}"
            nbytes = storage.nbytes()
            if nbytes is None:
                _unsupported(storage)
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise _Fail(f"missing archive member {member!r}", first_user) from None
            if info.file_size != nbytes:
                raise _Fail(f"archive member {member!r} holds {info.file_size} bytes but the tensor "
                            f"record needs {nbytes}: corrupt file", first_user)
            _materialise(storage, lambda view, i=info, s=storage: _read_member_into(archive, i, view, s),
                         swap=swap, out=out)
        return out  # type: ignore[return-value]


def _native_order() -> str:
    return "little" if np.little_endian else "big"


def _zip_member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise _Fail(f"corrupt archive member {name!r} ({e})") from None


def _read_member_into(archive: zipfile.ZipFile, info: zipfile.ZipInfo, view: memoryview,
                      storage: _Storage) -> None:
    first_user = storage.users[0][0] if storage.users else None
    try:
        with archive.open(info) as member:
            filled = 0
            while filled < len(view):
                chunk = member.read(min(_CHUNK, len(view) - filled))
                if not chunk:
                    raise _Fail(f"truncated archive member {info.filename!r}", first_user)
                view[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
            # Reading past the end makes zipfile verify the member's CRC.
            if member.read(1):
                raise _Fail(f"archive member {info.filename!r} is longer than its recorded size", first_user)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise _Fail(f"corrupt archive member {info.filename!r} ({e})", first_user) from None


# --------------------------------------------------------------------------------------------
# State dict checks and tensor assembly


def _state_dict_entries(obj: Any) -> list[tuple[str, _TensorRecord]]:
    if isinstance(obj, _TensorRecord):
        raise _Fail("holds a single tensor, not a state dict (a dict of named tensors)")
    if not isinstance(obj, dict):
        raise _Fail(f"holds a pickled {_describe(obj)}, not a state dict (a dict of named tensors)")
    entries = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise _Fail(f"has a non-string key {_short_repr(key)}: not a state dict")
        if not isinstance(value, _TensorRecord):
            raise _Fail(f"is a {_describe(value)}, not a tensor; a state dict maps names to tensors "
                        "(a training checkpoint? save its state dict on its own)", key)
        _check_record(key, value)
        entries.append((key, value))
    return entries


def _describe(value: Any) -> str:
    if isinstance(value, _StorageRef):
        return "bare storage"
    if isinstance(value, (_StorageType, _DType)):
        return value.torch_name
    return type(value).__name__


def _unsupported(storage: _Storage) -> None:
    first_user = storage.users[0][0] if storage.users else None
    raise _Fail(f"unsupported dtype: storage type {storage.type.torch_name}", first_user)


def _check_record(key: str, record: _TensorRecord) -> None:
    ref = record.storage
    if not isinstance(ref, _StorageRef):
        raise _Fail(f"malformed tensor record: its storage is a {_describe(ref)}", key)
    size, stride, offset = record.size, record.stride, record.offset
    if isinstance(size, list):
        size = tuple(size)
    if isinstance(stride, list):
        stride = tuple(stride)
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(_is_int(n) and n >= 0 for n in size) and all(_is_int(s) and s >= 0 for s in stride)
            and _is_int(offset) and offset >= 0):
        raise _Fail(f"malformed tensor record: size {_short_repr(record.size)}, stride "
                    f"{_short_repr(record.stride)}, offset {_short_repr(offset)}", key)
    record.size, record.stride = size, stride
    if record.metadata and any(bool(v) for v in dict(record.metadata).values()):
        raise _Fail(f"unsupported tensor flags {_short_repr(record.metadata)} (lazy conj/neg bits)", key)

    storage = ref.storage
    if record.dtype is None:
        record.dtype_name = storage.type.dtype_name
        if _numpy_dtype(record.dtype_name) is None:
            raise _Fail(f"unsupported dtype: storage type {storage.type.torch_name}", key)
    else:
        record.dtype_name = record.dtype.dtype_name
        if _numpy_dtype(record.dtype_name) is None:
            raise _Fail(f"unsupported dtype {record.dtype.torch_name}", key)
        if _numpy_dtype(storage.type.dtype_name) is None:
            raise _Fail(f"unsupported dtype: storage type {storage.type.torch_name}", key)

    # Bounds, in bytes, because _rebuild_tensor_v3 puts typed tensors on byte storages.
    itemsize = _numpy_dtype(record.dtype_name).itemsize
    storage_itemsize = storage.itemsize()
    window_start = ref.offset * storage_itemsize
    window_end = window_start + ref.numel * storage_itemsize
    if math.prod(size) == 0:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    needed = window_start + (last + 1) * itemsize
    if needed > window_end:
        raise _Fail(f"storage too small: size {list(size)}, stride {list(stride)} and offset {offset} "
                    f"reach element {last} but the storage holds {(window_end - window_start) // itemsize} "
                    f"{record.dtype_name} elements", key)


def _attach_users(entries: list[tuple[str, _TensorRecord]]) -> None:
    for name, record in entries:
        record.storage.storage.users.append((name, record))


def _is_c_contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _swap_bytes(array: np.ndarray) -> None:
    unit = array.dtype.itemsize // 2 if array.dtype.kind == "c" else array.dtype.itemsize
    if unit > 1:
        array.reshape(-1).view(np.dtype(f"u{unit}")).byteswap(inplace=True)


def _materialise(storage: _Storage, fill, swap: bool, out: dict) -> None:
    """Reads ``storage`` (``fill(memoryview)`` writes its bytes) and stores each user's array."""
    nbytes = storage.nbytes()
    users = storage.users
    if len(users) == 1:
        name, record = users[0]
        dtype = _numpy_dtype(record.dtype_name)
        ref = record.storage
        # The usual case: one tensor covering its whole storage, contiguously. Read the bytes
        # straight into the result.
        if (ref.offset == 0 and record.offset == 0 and _is_c_contiguous(record.size, record.stride)
                and math.prod(record.size) * dtype.itemsize == nbytes):
            array = np.empty(record.size, dtype)
            fill(memoryview(array.reshape(-1).view(np.uint8)))
            if swap:
                _swap_bytes(array)
            out[name] = array
            return
    buffer = np.empty(nbytes, np.uint8)
    fill(memoryview(buffer))
    for name, record in users:
        out[name] = _view(buffer, storage, record, swap)


def _view(buffer: np.ndarray, storage: _Storage, record: _TensorRecord, swap: bool) -> np.ndarray:
    dtype = _numpy_dtype(record.dtype_name)
    if math.prod(record.size) == 0:
        return np.empty(record.size, dtype)
    start = record.storage.offset * storage.itemsize() + record.offset * dtype.itemsize
    count = (len(buffer) - start) // dtype.itemsize
    typed = buffer[start:start + count * dtype.itemsize].view(dtype)
    strided = np.lib.stride_tricks.as_strided(
        typed, shape=record.size, strides=tuple(s * dtype.itemsize for s in record.stride), writeable=False
    )
    array = np.array(strided, dtype=dtype, order="C", copy=True)
    if swap:
        _swap_bytes(array)
    return array


# --------------------------------------------------------------------------------------------
# Wording a refused global


def _refusal(name: str, pickle_stream: BinaryIO) -> str:
    try:
        top, instantiated = _scan_classes(pickletools.genops(pickle_stream))
    except Exception:  # noqa: BLE001 - the scan only improves the message
        top, instantiated = None, set()
    if name == top:
        return f"holds a pickled {name}, not a state dict; save model.state_dict()"
    if name in instantiated:
        return (f"holds a pickled {name} object, not only tensors: not a plain state dict; "
                "save model.state_dict()")
    return f"refusing to load global {name!r}: a weight file must not run code"


_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
               "BINUNICODE8"}
_MARK = object()


def _scan_classes(ops) -> tuple[str | None, set[str]]:
    """Statically follows a pickle's stack: which globals become objects (NEWOBJ), and which one
    the top-level object is an instance of. Nothing is executed or imported."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    instantiated: set[str] = set()
    for op, arg, _pos in ops:
        name = op.name
        if name == "STOP":
            top = stack[-1] if stack else None
            return (top[1] if isinstance(top, tuple) and top[0] == "instance" else None), instantiated
        if name == "MARK":
            stack.append(_MARK)
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(("global", _global_name(module, attr)))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            ok = isinstance(attr, tuple) and isinstance(module, tuple) and attr[0] == module[0] == "str"
            stack.append(("global", _global_name(module[1], attr[1])) if ok else None)
        elif name in _STRING_OPS:
            stack.append(("str", arg))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        elif name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE"):
            if name == "TUPLE":
                mark = len(stack) - 1 - stack[::-1].index(_MARK)
                items = stack[mark + 1:]
                del stack[mark:]
            else:
                n = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "EMPTY_TUPLE": 0}[name]
                items = stack[len(stack) - n:] if n else []
                del stack[len(stack) - n:]
            stack.append(("tuple", items))
        elif name in ("NEWOBJ", "NEWOBJ_EX"):
            del stack[len(stack) - (2 if name == "NEWOBJ_EX" else 1):]
            cls = stack.pop()
            if isinstance(cls, tuple) and cls[0] == "global":
                instantiated.add(cls[1])
                stack.append(("instance", cls[1]))
            else:
                stack.append(None)
        elif name == "BINPERSID":
            pid = stack.pop()
            # Legacy torch.save(model) stands each module class in as ('module', cls, file, source).
            if (isinstance(pid, tuple) and pid[0] == "tuple" and len(pid[1]) >= 2
                    and pid[1][0] == ("str", "module") and isinstance(pid[1][1], tuple)
                    and pid[1][1][0] == "global"):
                stack.append(pid[1][1])
            else:
                stack.append(None)
        elif name == "BUILD":
            stack.pop()  # the state; the object keeps its identity
        else:
            before = op.stack_before
            if pickletools.markobject in before:
                mark = len(stack) - 1 - stack[::-1].index(_MARK)
                del stack[mark:]
                below = before.index(pickletools.markobject)
                if below:
                    del stack[len(stack) - below:]
            elif before:
                del stack[len(stack) - len(before):]
            stack.extend([None] * len(op.stack_after))
    return None, instantiated

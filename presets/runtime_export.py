"""ONNX, OpenVINO and LiteRT artifacts, converted from TensorFlow graphs of the model (OpenVINO and
LiteRT from the TensorFlow-graph SavedModel of presets/export.py).

Every converter reads TensorFlow graphs, so every backend gets there the same way: TensorFlow traces
the model in process; JAX and PyTorch save it as `.keras` and a KERAS_BACKEND=tensorflow subprocess
traces and converts it (JAX's own SavedModel holds StableHLO in XlaCallModule ops, which none of the
converters reads). Only the int32 `serving_default` signature converts: tokenisation stays outside
(the tokenizers and pipelines do it), as for transformers' ONNX exports.

What each converter needed:
- ONNX (tf2onnx, opset 17): traced from the Keras model itself, not from the SavedModel, with every
  variable as a graph input (Keras' stateless call maps the variables onto them), and the weights
  written back as initializers afterwards. Converted from the SavedModel, tf2onnx freezes every
  variable into a constant and copies the constants through each of its passes, many times the
  weights' size in memory (README, "Serving"). TensorFlow's exact GELU is an `Erfc` op, which tf2onnx lacks; it is
  written as 1 - Erf(x) here. tf2onnx's reshape optimiser folds the reshape that ends a rank-3
  `tensordot` (every Keras Dense on [B, L, d] inputs) into the next reshape's target shape and
  then computes that shape from the rank-2 product, so the converted graph fails at run time for
  every input; the conversion runs without that one optimiser pass.
- OpenVINO: `openvino.convert_model` reads the SavedModel; weights are kept float32 (its default
  save compresses them to float16).
- LiteRT: TensorFlow's TFLite converter with builtin ops only (what the `ai-edge-litert` interpreter
  runs), dynamic batch and length kept.

The in-graph input checks of the SavedModel (TensorFlow asserts) do not survive conversion: the
runtimes check what they must themselves (onnxruntime and LiteRT refuse out-of-range ids in their
gathers and wrong dtypes; OpenVINO does not), and `presets.runtimes.ExportedModel` checks every
request before the runtime sees it. `serving.json` beside the artifact records what it checks.
"""

import contextlib
import json
import os

import keras

from presets import keras_compat

RUNTIME_FORMATS = {"onnx": "model.onnx", "openvino": "model.xml", "litert": "model.tflite"}
METADATA_FILE = "serving.json"
ONNX_OPSET = 17
# Graph inputs named so during tracing become the weights' initializers (model_to_onnx).
WEIGHT_INPUT_PREFIX = "keras_weight_"
# A protobuf holds at most 2 GB: above this many bytes of weights they go to one file beside it.
ONNX_INLINE_LIMIT = 1 << 30


def convert(saved_model_dir, output_dir, format):
    """Converts the `serving_default` signature of a TensorFlow-graph SavedModel into `output_dir`
    (OpenVINO and LiteRT; ONNX is traced from the model: `model_to_onnx`)."""
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, RUNTIME_FORMATS[format])
    if format == "openvino":
        import openvino

        openvino.save_model(openvino.convert_model(saved_model_dir), target, compress_to_fp16=False)
    elif format == "litert":
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with open(target, "wb") as f:
            f.write(converter.convert())
    else:
        raise ValueError(f"unknown SavedModel-converted format {format!r}; one of 'openvino', 'litert'")
    return target


def model_to_onnx(model, output_dir, input_specs, output_names):
    """Writes `model.onnx` for a Keras model on the TensorFlow backend (see the module docstring).

    Args:
        input_specs: {name: tf.TensorSpec} of the int32 inputs (graph inputs in sorted name order).
        output_names: the model outputs to return, cast to float32 and named so.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx
    from keras import ops

    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, RUNTIME_FORMATS["onnx"])
    variables = list(model.variables)
    names = sorted(input_specs)
    weight_names = [f"{WEIGHT_INPUT_PREFIX}{i}" for i in range(len(variables))]
    weight_specs = [tf.TensorSpec(v.shape, v.dtype, name=n) for v, n in zip(variables, weight_names)]
    specs = [tf.TensorSpec(input_specs[n].shape, input_specs[n].dtype, name=n) for n in names] + weight_specs

    @tf.function(input_signature=specs, autograph=False)
    def serving(*arguments):  # the int32 inputs, then one tensor per variable
        inputs, weights = dict(zip(names, arguments[:len(names)])), arguments[len(names):]
        with keras.StatelessScope(state_mapping=list(zip(variables, weights))):
            outputs = model(inputs, training=False)
        return {n: tf.identity(ops.cast(outputs[n], "float32"), name=n) for n in output_names}

    _register_erfc()
    with _without_tf2onnx_reshape_optimizer():
        proto, _ = tf2onnx.convert.from_function(serving, input_signature=specs, opset=ONNX_OPSET)
    graph = proto.graph
    by_name = dict(zip(weight_names, variables))
    kept = [i for i in graph.input if i.name not in by_name]
    if len(kept) != len(graph.input) - len(variables) or [i.name for i in kept] != names:
        raise RuntimeError(f"tf2onnx renamed the graph inputs: {[i.name for i in graph.input][:8]}...")
    del graph.input[:]
    graph.input.extend(kept)
    used = _names_read(graph)
    size = 0
    for name, variable in by_name.items():  # one variable at a time: no second copy of the model
        if name not in used:  # e.g. dropout seed states: nothing at inference reads them
            continue
        value = keras.ops.convert_to_numpy(variable.value)
        size += value.nbytes
        graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    external = size > ONNX_INLINE_LIMIT
    onnx.save(proto, target, save_as_external_data=external, all_tensors_to_one_file=True,
              location=RUNTIME_FORMATS["onnx"] + ".data" if external else None)
    return target


def write_metadata(model, output_dir, format, max_length):
    """serving.json (what the artifact takes and returns, and the bounds a client must enforce) and
    the model's config.json, so `presets.runtimes.ExportedModel` and the pipelines can serve it."""
    metadata = {
        "format": format,
        "file": RUNTIME_FORMATS[format],
        "architecture": getattr(model, "hf_architecture", None) or type(model).__name__,
        "inputs": list(model.export_input_names),
        "input_rank": int(getattr(model, "input_rank", 2)),
        "outputs": list(model.primary_output_names),
        "input_limits": {name: int(limit) for name, limit in model.export_input_limits().items()},
        "max_length": int(max_length),
    }
    with open(os.path.join(output_dir, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
    model.config.save_pretrained(output_dir)


def _names_read(graph):
    """Every tensor name a node of `graph` or of its sub-graphs (Loop / If bodies) reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                names |= _names_read(sub)
    return names


def _register_erfc():
    """tf2onnx handler for TensorFlow's Erfc (the exact GELU): 1 - Erf(x)."""
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # noqa: F841 (registered by the decorator)
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            erf = ctx.make_node("Erf", [node.input[0]]).output[0]
            one = ctx.make_const(utils.make_name("one"), np.array(1, dtype=np.float32)).output[0]
            outputs, name = node.output, node.name
            ctx.remove_node(name)
            ctx.make_node("Sub", [one, erf], outputs=outputs, name=name)


@contextlib.contextmanager
def _without_tf2onnx_reshape_optimizer():
    """tf2onnx's optimiser passes without its reshape pass (see the module docstring), restored after."""
    import tf2onnx.optimizer as optimizer

    keras_compat.patch_tf2onnx()
    passes = optimizer._optimizers  # tf2onnx has no public switch for one pass
    saved = dict(passes)
    passes.pop("reshape_optimizer", None)
    try:
        yield
    finally:
        passes.clear()
        passes.update(saved)

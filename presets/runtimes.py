"""Serving an exported ONNX / OpenVINO / LiteRT artifact from Python, with the checks the SavedModel
carries in its graph.

`ExportedModel.from_pretrained(directory)` opens what `model.export(directory, format=...)` wrote
(serving.json says which runtime) and is called like the Keras model:
`exported(input_ids=..., attention_mask=..., token_type_ids=...)` -> `ModelOutput` of numpy arrays
named like the model's outputs (`logits`, `start_logits`, `last_hidden_state`, ...). Before the
runtime runs, every request is checked: integer dtypes only, the model's rank ([batch, length];
multiple choice [batch, choices, length]), every input of the shape of `input_ids`, batch and length
at least 1, length at most the export's `max_length`, ids in [0, vocab_size) and token types in
[0, type_vocab_size). A request failing one gets a ValueError / TypeError naming the input; the
runtime never sees it. (Called without the wrapper, onnxruntime and LiteRT refuse out-of-range ids
and wrong dtypes with their own errors; OpenVINO gathers out-of-range ids silently.)

The runtimes are optional dependencies: `pip install "keras-deberta-deepseek[serving]"`.
"""

import json
import os

import numpy as np

from presets.model_io import ModelOutput
from presets.runtime_export import METADATA_FILE


class ExportedModel:
    """An exported artifact and its runtime session.

    Args:
        directory: what `model.export(directory, format="onnx" | "openvino" | "litert")` wrote.
        num_threads: the runtime's intra-op threads (None: the runtime's default).
        precision: OpenVINO's inference precision, "f32" (default: outputs equal the Keras model's
            to float32 rounding) or "bf16" (OpenVINO's own default on CPUs with bf16 instructions).
        config_class: the family's config class to read config.json with (the pipelines pass it);
            None keeps config.json as a plain dict in `config`.

    It offers what the pipelines use of a Keras model (`config`, `primary_output_names`,
    `export_max_length()`, a call taking a dict of inputs), so `keras_deberta.pipeline(task,
    model=exported_directory)` serves an export with the same tokenisation and post-processing.
    """

    def __init__(self, directory, num_threads=None, precision="f32", config_class=None):
        directory = os.fspath(directory)
        path = os.path.join(directory, METADATA_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{directory!r} holds no {METADATA_FILE}: not a directory written by "
                                    "model.export(..., format='onnx' | 'openvino' | 'litert')")
        with open(path, encoding="utf-8") as f:
            self.metadata = json.load(f)
        config_path = os.path.join(directory, "config.json")
        self.config = None
        if config_class is not None:
            self.config = config_class.from_pretrained(directory)
        elif os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                self.config = json.load(f)
        self.directory = directory
        self.format = self.metadata["format"]
        self.input_names = tuple(self.metadata["inputs"])
        self.output_names = tuple(self.metadata["outputs"])
        self.max_length = int(self.metadata["max_length"])
        self._run = _open_runtime(self.format, os.path.join(directory, self.metadata["file"]), num_threads, precision)

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        return cls(directory, **kwargs)

    @property
    def primary_output_names(self):
        return self.output_names

    def export_max_length(self):
        """The export's bound on the length (what `presets.sequence_limits` asks a model)."""
        return self.max_length

    def predict_on_batch(self, inputs):
        return self(inputs)

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, training=False, **kwargs):
        if isinstance(input_ids, dict):
            kwargs = {**input_ids, **kwargs}
        else:
            kwargs.update(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        unknown = sorted(k for k, v in kwargs.items() if v is not None and k not in self.input_names)
        if unknown:
            raise TypeError(f"this {self.format} export takes {', '.join(self.input_names)}; got {', '.join(unknown)}")
        feed = self.check_inputs({k: v for k, v in kwargs.items() if v is not None})
        return ModelOutput(self._run(feed))

    def check_inputs(self, values):
        """{name: array-like} -> {name: int32 array} with every input the artifact takes, or raises."""
        if values.get("input_ids") is None:
            raise ValueError("input_ids is required")
        ids = _as_int32("input_ids", values["input_ids"])
        rank = self.metadata["input_rank"]
        if ids.ndim != rank:
            layout = "[batch, length]" if rank == 2 else "[batch, choices, length]"
            raise ValueError(f"input_ids must have shape {layout}, got {ids.shape}")
        if ids.size == 0:
            raise ValueError(f"input_ids has shape {ids.shape}: an empty batch or length has nothing to serve")
        if ids.shape[-1] > self.max_length:
            raise ValueError(f"input_ids has length {ids.shape[-1]}, longer than this export's max_length "
                             f"{self.max_length}")
        feed = {"input_ids": ids}
        for name in self.input_names[1:]:
            value = values.get(name)
            if value is None:  # transformers' defaults: attend everywhere, segment 0
                value = np.ones_like(ids) if name == "attention_mask" else np.zeros_like(ids)
            value = _as_int32(name, value)
            if value.shape != ids.shape:
                raise ValueError(f"{name} has shape {value.shape} but input_ids has shape {ids.shape}; they must be equal")
            feed[name] = value
        for name, upper in self.metadata["input_limits"].items():
            value = feed[name]
            if value.min() < 0 or value.max() >= upper:
                raise ValueError(f"{name} must lie in [0, {upper}); found values from {value.min()} to {value.max()}")
        return feed


def _as_int32(name, value):
    array = np.asarray(value)
    if array.dtype == bool:
        array = array.astype(np.int32)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.size and (array.min() < -(2**31) or array.max() >= 2**31):
        raise ValueError(f"{name} holds values outside the int32 range")
    return array.astype(np.int32, copy=False)


def _open_runtime(format, path, num_threads, precision):
    """A function {name: int32 array} -> {output name: float32 array} for the artifact at `path`."""
    if format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return lambda feed: dict(zip(names, session.run(names, feed)))
    if format == "openvino":
        import openvino

        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision must be 'f32' or 'bf16', got {precision!r}")
        properties = {"INFERENCE_PRECISION_HINT": precision}
        if num_threads:
            properties["INFERENCE_NUM_THREADS"] = int(num_threads)
        compiled = openvino.Core().compile_model(path, "CPU", properties)
        outputs = [(output, output.get_any_name()) for output in compiled.outputs]

        def run(feed):
            result = compiled(feed)
            return {name: np.asarray(result[output]) for output, name in outputs}

        return run
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        runner = interpreter.get_signature_runner("serving_default")
        return lambda feed: {name: np.asarray(value) for name, value in runner(**feed).items()}
    raise ValueError(f"unknown exported format {format!r}")

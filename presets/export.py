"""TensorFlow SavedModel export of every task model, from the TensorFlow, JAX and PyTorch backends.

The artifact is what transformers' TF models gave TF Serving: a `serving_default` signature taking
int32 `input_ids`, `attention_mask` (and, for DeBERTa, `token_type_ids`) of shape [batch, length]
(multiple choice: [batch, choices, length]) with dynamic batch and length, and returning a dict of
named float32 outputs (`logits`; QA: `start_logits`, `end_logits`; base models:
`last_hidden_state`). With a preprocessor, string-in signatures tokenise inside the graph:
`serve_text` (tf.string [batch]) and, for sequence classification, `serve_text_pair` (`text`,
`text_pair`); they return the model's outputs plus the `input_ids` and `attention_mask` they built.

How each backend gets there:
- TensorFlow: `keras.export.ExportArchive` traces the model into a tf.function.
- JAX: the same archive converts the model with jax2tf; ids, mask and token types share one symbolic
  batch and length (`polymorphic_shapes`), and a model with an absolute position table adds the
  constraint `length <= max_position_embeddings`.
- PyTorch: Keras cannot export from torch (it would need torch_xla), so the model is saved as a
  `.keras` file and a subprocess of the same interpreter with KERAS_BACKEND=tensorflow reloads it
  and exports it; its stderr comes back in the error if it fails.

Long inputs. Every export has a `max_length` (default: the tokenizer's model_max_length, else the
config's max_position_embeddings; presets/sequence_limits.py): `serving_default` asserts that
`input_ids` is no longer (an InvalidArgumentError naming it), and the string-in signatures truncate
to it inside the graph. A relative-position model has no table that would refuse a long request,
and its attention memory grows with the square of the length.

Out-of-range inputs. The model's own index checks (presets.model_io.check_index_range) are switched
off while tracing: on JAX they are a host callback, which jax2tf cannot serialise ("serialization of
host_callbacks is not yet implemented"), and gathers in XLA would otherwise clamp silently. Instead
every signature checks its inputs with TensorFlow asserts before the model runs, identically on
every backend: ids in [0, vocab_size), token type ids in [0, type_vocab_size), mask and type ids of
the shape of input_ids, every input of the signature's rank (a signature does not check the shape
it is called with) with a non-empty batch and length, texts of rank 1 in a non-empty batch, and the
length within the absolute position table where there is one. A bad
request fails with InvalidArgumentError naming the input (TF Serving answers HTTP 400 with that
message) instead of returning numbers computed from clamped ids.

ONNX, OpenVINO and LiteRT (`format=`): `serving_default` converted from the TensorFlow graph, on
every backend (presets/runtime_export.py says how, and what survives of the checks).

The artifact is written into a temporary directory beside the target and renamed into place at the
end, so a crash never leaves a half-written SavedModel under the target name.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import keras

from layers.disentangled_attention import AUTO_BLOCK_MIN_LENGTH, DisentangledSelfAttention
from presets import keras_compat, runtime_export
from presets.export_signatures import (input_checks, input_signature, polymorphic_constraints, polymorphic_shapes,
                                       shape_checks)
from presets.model_io import runtime_index_checks_disabled
from presets.runtime_export import RUNTIME_FORMATS
from presets.sequence_limits import default_max_length

SUPPORTED_FORMATS = ("tf_saved_model",) + tuple(RUNTIME_FORMATS)
SERVING_SIGNATURE = "serving_default"
TEXT_SIGNATURE = "serve_text"
TEXT_PAIR_SIGNATURE = "serve_text_pair"
# Outputs of the string-in signatures besides the model's: the encoding the graph built, so a client
# can find [MASK] positions or align token logits with tokens.
TEXT_EXTRA_OUTPUTS = ("input_ids", "attention_mask")


class ExportError(RuntimeError):
    """The export could not be produced (e.g. the TensorFlow subprocess of the torch path failed)."""


# --- what a model class declares -----------------------------------------------------------------
# export_input_names: int32 inputs of `serving_default`, input_ids first.
# input_rank: 2 ([batch, length]) or 3 (multiple choice: [batch, choices, length]).
# primary_output_names: the named outputs the signatures return.
# export_input_limits(): {input name: exclusive upper bound} asserted at the signature boundary.
# export_max_length(): the longest sequence the model accepts, or None.
# export_text_signatures: which string-in signatures the model supports (empty: none).
# preprocessor_class / text_serving_module: the family's in-graph preprocessing (string-in only).


class ExportMixin:
    """`model.export(...)` for a task model; the model class declares what its signatures carry."""

    # int32 inputs of the `serving_default` signature; the outputs are `primary_output_names`.
    export_input_names = ("input_ids", "attention_mask")
    # The runtime formats the model's graph converts to (presets/runtime_export.py).
    export_runtime_formats = tuple(RUNTIME_FORMATS)
    # String-in signatures ("serve_text", "serve_text_pair") the model offers with a preprocessor.
    export_text_signatures = ()

    def export_input_limits(self):
        """{input name: exclusive upper bound} that the exported signatures assert."""
        return {"input_ids": self.config.vocab_size}

    def export_max_length(self):
        """The longest sequence the exported model accepts (None: no limit)."""
        return None

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, *,
               preprocessor=None, tokenizer=None, overwrite=False, sequence_length=None, jax2tf_kwargs=None,
               max_length=None):
        """Writes a TensorFlow SavedModel for TF Serving, on every backend (torch: through a
        TensorFlow subprocess). `serving_default` takes int32 `input_ids`, `attention_mask` (and
        `token_type_ids` for DeBERTa) with dynamic batch and length and returns the named outputs;
        `preprocessor=` (or `tokenizer=`) adds string-in signatures; `max_length` bounds every
        signature's length (default: the tokenizer's model_max_length, else the config's
        max_position_embeddings). `format="onnx" | "openvino" | "litert"` converts that signature
        into a directory for that runtime instead (`presets.runtimes.ExportedModel` serves it).
        See `presets.export.export_saved_model` for every argument."""
        if input_signature is not None:
            raise ValueError("the exported input signature is fixed by the model (int32 ids with dynamic "
                             "batch and length); input_signature is not supported")
        if preprocessor is not None and tokenizer is not None:
            raise ValueError("pass preprocessor= or tokenizer=, not both")
        return export_saved_model(
            self, filepath, preprocessor=preprocessor if preprocessor is not None else tokenizer,
            format=format, overwrite=overwrite, sequence_length=sequence_length,
            jax2tf_kwargs=jax2tf_kwargs, verbose=bool(verbose), max_length=max_length)


def export_saved_model(model, filepath, *, preprocessor=None, format="tf_saved_model", overwrite=False,
                       sequence_length=None, jax2tf_kwargs=None, verbose=False, max_length=None):
    """Exports `model` as a TensorFlow SavedModel for TF Serving, from any Keras backend.

    Args:
        model: a task model of either family (a `TFPreTrainedModel`).
        filepath: the SavedModel directory to write. A local path; it must not exist or be an empty
            directory, unless `overwrite=True`.
        preprocessor: optional tokenizer (DebertaV2Tokenizer / DebertaTokenizer) or in-graph
            preprocessor (DebertaV2Preprocessor / DebertaPreprocessor) of the model's family: adds
            the string-in signature(s) for sequence classification, token classification and
            masked LM models.
        format: "tf_saved_model" (default), or "onnx", "openvino", "litert": the `serving_default`
            signature converted for that runtime (presets/runtime_export.py), written with
            serving.json and config.json into the directory `filepath`; no string-in signatures.
        overwrite: replace an existing file or non-empty directory at `filepath`.
        sequence_length: with a tokenizer as `preprocessor`: pad and truncate every text to this
            many tokens; None (default) pads each request to its longest text and truncates at
            `max_length`. A preprocessor brings its own settings (one without a bound of its own
            is still held to `max_length` by the check below: a longer text fails, uncut).
        jax2tf_kwargs: JAX only, extra arguments for `jax2tf.convert`, e.g.
            `{"native_serialization_platforms": ("cpu", "cuda")}` to serve on GPU and CPU.
        verbose: print the signatures written.
        max_length: the longest token sequence any signature takes: `serving_default` refuses a
            longer `input_ids` (InvalidArgumentError), string-in signatures truncate to it.
            Default: the tokenizer's model_max_length, else the config's max_position_embeddings
            (512 for DeBERTa), never more than an absolute position table holds.

    Returns:
        `filepath`.
    """
    _check_model(model)
    if format not in SUPPORTED_FORMATS:
        raise ValueError(
            f"unsupported export format {format!r}; {type(model).__name__}.export writes "
            f"{', '.join(repr(f) for f in SUPPORTED_FORMATS)}"
        )
    if format in RUNTIME_FORMATS and format not in model.export_runtime_formats:
        raise ValueError(f"{type(model).__name__} exports to {', '.join(model.export_runtime_formats)} and "
                         f"tf_saved_model, not {format!r}")
    filepath = os.fspath(filepath)
    if "://" in filepath:
        raise ValueError(f"export writes to a local directory (it renames into place), got {filepath!r}")
    _check_target(filepath, overwrite)
    max_length = _export_max_length(model, preprocessor, max_length)
    text_preprocessor = None
    runtime_tokenizer = None
    if format in RUNTIME_FORMATS:
        # No string-in signature converts: a tokenizer given is saved beside the artifact instead,
        # so the pipelines (and any client) tokenise as the model was trained.
        runtime_tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
        if runtime_tokenizer is not None and not hasattr(runtime_tokenizer, "save_pretrained"):
            raise TypeError(f"format={format!r}: tokenizer= must be a tokenizer (saved beside the artifact), "
                            f"got {type(runtime_tokenizer).__name__}")
        if sequence_length is not None:
            raise ValueError(f"sequence_length applies to the SavedModel's string-in signatures, not format={format!r}")
        if jax2tf_kwargs:
            raise ValueError(f"format={format!r} is converted from a TensorFlow graph; jax2tf_kwargs do not apply")
    elif preprocessor is not None:
        text_preprocessor = _as_preprocessor(model, preprocessor, sequence_length, max_length)
    elif sequence_length is not None:
        raise ValueError("sequence_length only applies to a string-in export: pass preprocessor= as well")
    backend = keras.backend.backend()
    if jax2tf_kwargs and backend != "jax":
        raise ValueError(f"jax2tf_kwargs only applies on the JAX backend, not {backend}")

    with _staging_directory(filepath) as staging:
        if format in RUNTIME_FORMATS:
            graph = os.path.join(os.path.dirname(staging), "graph")  # the TensorFlow-graph SavedModel
            if backend == "tensorflow":
                _convert_in_process(model, graph, staging, format, max_length)
            else:  # JAX's SavedModel holds StableHLO, which no converter reads: trace under TensorFlow
                _export_through_tensorflow(model, graph, max_length=max_length, convert_to=(format, staging))
            runtime_export.write_metadata(model, staging, format, max_length)
            if runtime_tokenizer is not None:
                runtime_tokenizer.save_pretrained(staging)
        elif backend in ("tensorflow", "jax"):
            _export_in_process(model, staging, text_preprocessor, jax2tf_kwargs=jax2tf_kwargs, max_length=max_length)
        elif backend == "torch":
            _export_through_tensorflow(model, staging, text_preprocessor, max_length=max_length)
        else:
            raise ValueError(f"SavedModel export is not available on the {backend} backend")
        _install(staging, filepath, overwrite)
    if verbose:
        names = [SERVING_SIGNATURE] + (list(model.export_text_signatures) if text_preprocessor else [])
        print(f"Saved {type(model).__name__} to {filepath!r} with signatures {', '.join(names)}")
    return filepath


# --- validation ----------------------------------------------------------------------------------
def _check_model(model):
    missing = [a for a in ("export_input_names", "primary_output_names", "config") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"{type(model).__name__} cannot be exported: it has no {', '.join(missing)}")
    if not model.built:
        model.build_with_dummy_inputs()


def _check_target(path, overwrite):
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
        return
    if not overwrite:
        what = "a non-empty directory" if os.path.isdir(path) else "a file"
        raise FileExistsError(f"export target {path!r} is {what}; pass overwrite=True to replace it")


def _export_max_length(model, preprocessor, max_length):
    """The export's bound on the length: given, or the default of presets/sequence_limits.py."""
    hard = model.export_max_length()
    if max_length is None:
        tokenizer = getattr(preprocessor, "tokenizer", preprocessor)  # an in-graph layer holds its tokenizer
        max_length = default_max_length(model, tokenizer)
        if max_length is None:
            raise ValueError(f"{type(model).__name__}: neither its tokenizer nor its config names a length "
                             "limit; pass max_length=")
        return max_length
    if isinstance(max_length, bool) or int(max_length) != max_length or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    if hard is not None and max_length > hard:
        raise ValueError(f"max_length {max_length} is longer than the {hard} positions of "
                         f"{type(model).__name__}'s absolute position table")
    return int(max_length)


def _as_preprocessor(model, preprocessor, sequence_length, max_length):
    """A tokenizer or in-graph preprocessor -> the model family's in-graph preprocessor, which
    truncates to `max_length` when it is built here."""
    supported = tuple(getattr(model, "export_text_signatures", ()))
    cls = getattr(model, "preprocessor_class", None)
    if not supported or cls is None:
        raise ValueError(
            f"{type(model).__name__} has no string-in signature; preprocessor= is supported for "
            "DeBERTa sequence classification, token classification and masked LM models"
        )
    if isinstance(preprocessor, cls):
        if sequence_length is not None:
            raise ValueError("sequence_length is set by the preprocessor itself; pass it there, not to export")
        return preprocessor
    if isinstance(preprocessor, keras.layers.Layer):
        raise TypeError(f"{type(model).__name__} takes a {cls.__name__} (or its tokenizer) as preprocessor, "
                        f"got a {type(preprocessor).__name__}")
    if sequence_length is not None and sequence_length > max_length:
        raise ValueError(f"sequence_length {sequence_length} is longer than max_length {max_length}")
    try:
        if sequence_length is not None:
            return cls(preprocessor, sequence_length=sequence_length)
        return cls(preprocessor, max_length=max_length)
    except TypeError as error:
        raise TypeError(f"preprocessor for {type(model).__name__}: {error} "
                        f"(or a {cls.__name__}), got {type(preprocessor).__name__}") from None


# --- tracing ---------------------------------------------------------------------------------------
def _export_in_process(model, directory, text_preprocessor=None, jax2tf_kwargs=None, *, max_length):
    import tensorflow as tf
    from keras import ops

    output_names = tuple(model.primary_output_names)
    spec = input_signature(model)

    def forward(inputs):  # {name: [B, L] int32} -> {output name: float32}
        outputs = model(dict(inputs), training=False)
        return {name: ops.cast(outputs[name], "float32") for name in output_names}

    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoint_kwargs = {}
    if keras.backend.backend() == "jax":
        options = {"polymorphic_shapes": polymorphic_shapes(model),
                   "polymorphic_constraints": polymorphic_constraints(model),
                   # Serving only: no gradient functions (the dropout seed states have none to trace).
                   "with_gradient": False}
        options.update(jax2tf_kwargs or {})
        endpoint_kwargs["jax2tf_kwargs"] = options
    with runtime_index_checks_disabled(), _full_attention_below(model, max_length), warnings.catch_warnings():
        # Keras passes jax2tf's deprecated `native_serialization` itself; nothing the caller can change.
        warnings.filterwarnings("ignore", message="The `native_serialization` parameter is deprecated",
                                category=DeprecationWarning)
        # The bare model function is an attribute of the artifact but no signature: every signature
        # goes through the input checks below.
        unchecked = archive.add_endpoint("unchecked_forward", forward, input_signature=[spec], **endpoint_kwargs)
        if "unchecked_forward" in getattr(archive, "_endpoint_names", []):
            archive._endpoint_names.remove("unchecked_forward")

        def checked(inputs):
            with tf.control_dependencies(input_checks(model, inputs, max_length)):
                inputs = {name: tf.identity(value) for name, value in inputs.items()}
            return unchecked(inputs)

        archive.add_endpoint(SERVING_SIGNATURE, tf.function(checked, input_signature=[spec], autograph=False))
        if text_preprocessor is not None:
            _add_text_signatures(archive, model, text_preprocessor, checked)
        archive.write_out(directory, verbose=False)


def _convert_in_process(model, graph, output_dir, format, max_length):
    """The `format` artifact of a model on the TensorFlow backend: ONNX traced from the model itself,
    OpenVINO and LiteRT converted from its SavedModel written to `graph` (presets/runtime_export.py)."""
    if format == "onnx":
        with runtime_index_checks_disabled(), _full_attention_below(model, max_length):
            runtime_export.model_to_onnx(model, output_dir, input_signature(model), model.primary_output_names)
    else:
        _export_in_process(model, graph, max_length=max_length)
        runtime_export.convert(graph, output_dir, format)


@contextlib.contextmanager
def _full_attention_below(model, max_length):
    """Traces DeBERTa attention in its full form when every length the export admits takes that
    form anyway: automatic blocking (attention_block_size=None) starts only above
    AUTO_BLOCK_MIN_LENGTH, so under a shorter max_length the run-time choice between the forms is
    dead code in the graph (and LiteRT's builtin ops cannot hold the blocked form's loop). The
    layers' setting is restored afterwards."""
    automatic = []
    if max_length <= AUTO_BLOCK_MIN_LENGTH:
        pending = [model]
        while pending:
            layer = pending.pop()
            if isinstance(layer, DisentangledSelfAttention) and layer.attention_block_size is None:
                automatic.append(layer)
            pending.extend(keras_compat.child_layers(layer))
    try:
        for layer in automatic:
            layer.attention_block_size = 0
        yield
    finally:
        for layer in automatic:
            layer.attention_block_size = None


def _add_text_signatures(archive, model, preprocessor, checked):
    import tensorflow as tf

    names = tuple(model.export_text_signatures)

    def texts(*strings):  # each [B] tf.string, checked before the tokeniser sees it
        checks = [check for n, t in zip(("text", "text_pair"), strings) for check in shape_checks(n, t, 1, "[batch]")]
        with tf.control_dependencies(checks):
            return [tf.identity(t) for t in strings]

    def run(encoded):  # the preprocessor's dict of [B, L] tensors -> model outputs + the encoding
        inputs = {name: tf.cast(encoded[name], tf.int32) for name in model.export_input_names}
        outputs = dict(checked(inputs))
        outputs.update({name: inputs[name] for name in TEXT_EXTRA_OUTPUTS})
        return outputs

    if TEXT_SIGNATURE in names:
        single = model.text_serving_module(preprocessor)
        archive.track(single)  # its tf-text resources (also on JAX / torch, where Keras layers are not tracked)
        archive.add_endpoint(TEXT_SIGNATURE, tf.function(
            lambda text: run(single.serve(*texts(text))),
            input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False))
    if TEXT_PAIR_SIGNATURE in names:
        pairs = model.text_serving_module(preprocessor, pairs=True)
        archive.track(pairs)
        archive.add_endpoint(TEXT_PAIR_SIGNATURE, tf.function(
            lambda text, text_pair: run(pairs.serve(*texts(text, text_pair))),
            input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                             tf.TensorSpec([None], tf.string, name="text_pair")], autograph=False))


# --- PyTorch (and JAX for the runtime formats): export in a TensorFlow subprocess -----------------
def _export_through_tensorflow(model, directory, text_preprocessor=None, *, max_length, convert_to=None):
    """Saves the model (.keras) and preprocessor, and exports them in a KERAS_BACKEND=tensorflow
    subprocess of this interpreter; `convert_to=(format, directory)` converts the export there too."""
    with tempfile.TemporaryDirectory(prefix="keras-export-") as scratch:
        spec = {"model_file": os.path.join(scratch, "model.keras"),
                "model_module": type(model).__module__, "output": directory, "max_length": max_length,
                "convert_to": list(convert_to) if convert_to else None}
        model.save(spec["model_file"])
        if text_preprocessor is not None:
            tokenizer_dir = os.path.join(scratch, "tokenizer")
            text_preprocessor.tokenizer.save_pretrained(tokenizer_dir)
            spec["preprocessor"] = {
                "module": type(text_preprocessor).__module__, "class": type(text_preprocessor).__name__,
                "tokenizer_dir": tokenizer_dir,
                "kwargs": {"sequence_length": text_preprocessor.sequence_length,
                           "max_length": text_preprocessor.max_length,
                           "truncation": text_preprocessor.truncation,
                           "dtype": text_preprocessor.output_dtype},
            }
        spec_file = os.path.join(scratch, "export.json")
        with open(spec_file, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        # The subprocess must import this project as the parent did, installed or not.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        result = subprocess.run([sys.executable, "-m", "presets.export", spec_file], env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ExportError(
                f"exporting {type(model).__name__} from the {keras.backend.backend()} backend failed in its TensorFlow "
                f"subprocess (exit code {result.returncode}); its stderr ends with:\n"
                + _tail(result.stderr))


def _tail(text, lines=40):
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _export_from_spec(spec_file):
    """The subprocess side of `_export_through_tensorflow` (KERAS_BACKEND=tensorflow)."""
    import importlib

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the export subprocess needs KERAS_BACKEND=tensorflow, has {keras.backend.backend()}")
    with open(spec_file, encoding="utf-8") as f:
        spec = json.load(f)
    importlib.import_module(spec["model_module"])  # registers the model classes for deserialisation
    model = keras.saving.load_model(spec["model_file"])
    text_preprocessor = None
    if spec.get("preprocessor"):
        pre = spec["preprocessor"]
        cls = getattr(importlib.import_module(pre["module"]), pre["class"])
        text_preprocessor = cls.from_pretrained(pre["tokenizer_dir"], **pre["kwargs"])
    if spec.get("convert_to"):
        format, directory = spec["convert_to"]
        _convert_in_process(model, spec["output"], directory, format, spec["max_length"])
    else:
        _export_in_process(model, spec["output"], text_preprocessor, max_length=spec["max_length"])


# --- atomic write --------------------------------------------------------------------------------
@contextlib.contextmanager
def _staging_directory(path):
    """A fresh directory beside `path`; removed on error (and after it was renamed into place)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(path)) + ".", suffix=".tmp", dir=parent)
    try:
        yield os.path.join(scratch, "saved_model")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _install(staging, path, overwrite):
    """Renames the finished export to `path`, replacing what is there (checked by _check_target)."""
    _check_target(path, overwrite)  # again: something may have appeared while exporting
    if not os.path.lexists(path):
        os.replace(staging, path)
        return
    if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
        os.rmdir(path)
        os.replace(staging, path)
        return
    # Replace: move the old one aside (same directory, so a rename), move the new one in, delete the old.
    old = staging + ".old"
    os.replace(path, old)
    os.replace(staging, path)
    if os.path.isdir(old) and not os.path.islink(old):
        shutil.rmtree(old)
    else:
        os.remove(old)


if __name__ == "__main__":
    _export_from_spec(sys.argv[1])

"""Runs cases of tests/test_hostile_inputs.py in one process under a memory cap and writes one JSON
record per case ({"error": None or what went wrong, "seconds": the case's own time}).

Usage: python hostile_worker.py PACKAGE_ROOT OUT_JSON CASE[,CASE...]. PACKAGE_ROOT is the checkout
whose packages are imported (the test passes this repository; pointing it at an older checkout
shows which cases that code fails). The helpers of tests/ come from beside this file.

Every case builds its own hostile input from small fixtures made once per process (a tiny
checkpoint of each family, a `.keras` file, two tokenizers, a SavedModel on TensorFlow) and
checks the answer: a typed error naming the field / argument / tensor, or the right result. A
case that allocates past the cap gets MemoryError (or the backend's allocation error) and fails;
one that runs past CASE_TIMEOUT_S is interrupted and fails.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile

# The address-space cap. It works on all three backends: importing TensorFlow, JAX or
# torch with Keras and building the tiny models stays far below it (JAX and TF reserve address
# space lazily on CPU), so RLIMIT_AS needs no per-backend tuning.
MEMORY_CAP = 4 * 2**30
CASE_TIMEOUT_S = 20  # far above a passing case; an unbounded build is cut off here

PACKAGE_ROOT = os.path.abspath(sys.argv[1]) if __name__ == "__main__" else None
TESTS = os.path.dirname(os.path.abspath(__file__))


class CaseTimeout(Exception):
    pass


class CaseFailed(AssertionError):
    pass


def expect_error(call, types, *fragments):
    """Runs `call`; passes when it raises one of `types` whose message holds every fragment."""
    try:
        call()
    except types as e:
        text = str(e)
        missing = [f for f in fragments if f not in text]
        if missing:
            raise CaseFailed(f"{type(e).__name__} without {missing}: {text[:300]}") from None
        return e
    except CaseTimeout:
        raise
    except BaseException as e:  # MemoryError, backend allocation errors, raw errors
        raise CaseFailed(f"wrong error {type(e).__name__}: {str(e)[:300]}") from None
    raise CaseFailed("accepted without an error")


# --- fixtures, made once per process -----------------------------------------------------------
_FIXTURES = {}


def fixture(function):
    def cached():
        if function.__name__ not in _FIXTURES:
            _FIXTURES[function.__name__] = function()
        return _FIXTURES[function.__name__]
    return cached


@fixture
def deberta_dir():
    """A tiny DeBERTa-v3-like sequence classifier saved as an HF checkpoint."""
    import keras_deberta as kd
    from harness import deberta_v2_config

    directory = tempfile.mkdtemp(prefix="hostile_deberta_")
    kd.TFDebertaV2ForSequenceClassification(deberta_v2_config()).save_pretrained(directory)
    return directory


@fixture
def deepseek_dir():
    import keras_deepseek as ks
    from harness import deepseek_config

    directory = tempfile.mkdtemp(prefix="hostile_deepseek_")
    ks.TFDeepseekV2ForCausalLM(deepseek_config()).save_pretrained(directory)
    return directory


@fixture
def deepseek_model():
    import keras_deepseek as ks
    from harness import deepseek_config

    return ks.TFDeepseekV2ForCausalLM(deepseek_config())


@fixture
def deberta_model():
    import keras_deberta as kd
    from harness import deberta_v2_config

    return kd.TFDebertaV2Model(deberta_v2_config())


@fixture
def keras_file():
    path = os.path.join(tempfile.mkdtemp(prefix="hostile_keras_"), "model.keras")
    deberta_model().save(path)
    return path


@fixture
def v2_tokenizer():
    from keras_deberta import DebertaV2Tokenizer

    return DebertaV2Tokenizer.from_pretrained(os.path.join(PACKAGE_ROOT, "keras_deberta", "assets", "sst2-tiny"))


@fixture
def v1_tokenizer():
    """A byte-level BPE vocabulary of the 256 byte symbols and DeBERTa's special tokens, no merges."""
    from keras_deberta import DebertaTokenizer
    from keras_deberta.tokenization_bpe import bytes_to_unicode

    directory = tempfile.mkdtemp(prefix="hostile_bpe_")
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({symbol: 4 + i for i, symbol in enumerate(bytes_to_unicode().values())})
    vocab["[MASK]"] = len(vocab)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    return DebertaTokenizer.from_pretrained(directory)


@fixture
def saved_model():
    """The bundled sst2-tiny classifier exported with its tokenizer (string-in signatures too)."""
    import tensorflow as tf

    import keras_deberta as kd

    assets = os.path.join(PACKAGE_ROOT, "keras_deberta", "assets", "sst2-tiny")
    model = kd.TFDebertaV2ForSequenceClassification.from_pretrained(assets)
    path = os.path.join(tempfile.mkdtemp(prefix="hostile_export_"), "saved")
    model.export(path, preprocessor=kd.DebertaV2Tokenizer.from_pretrained(assets))
    loaded = tf.saved_model.load(path)
    # A loaded signature is optimised on its first call (seconds), whatever the input.
    ids = tf.ones((1, 4), tf.int32)
    loaded.signatures["serving_default"](input_ids=ids, attention_mask=ids, token_type_ids=tf.zeros_like(ids))
    loaded.signatures["serve_text"](text=tf.constant(["good"]))
    return loaded


# --- building hostile files ----------------------------------------------------------------------
def copy_with_config(directory, **changes):
    """A copy of a checkpoint directory whose config.json has `changes` (the weights linked)."""
    out = tempfile.mkdtemp(prefix="hostile_cfg_")
    for name in os.listdir(directory):
        if name != "config.json":
            os.symlink(os.path.join(directory, name), os.path.join(out, name))
    with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config.update(changes)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    return out


def keras_file_with(**changes):
    """A copy of the `.keras` file whose model config has `changes`."""
    out = os.path.join(tempfile.mkdtemp(prefix="hostile_keras_"), "model.keras")
    with zipfile.ZipFile(keras_file()) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["config"].update(changes)
                data = json.dumps(config).encode()
            target.writestr(info, data)
    return out


def rewrite_safetensors_header(directory, edit):
    """A copy of the checkpoint whose model.safetensors header went through `edit(header)`; the data
    section is byte for byte the original."""
    out = copy_with_config(directory)
    path = os.path.join(out, "model.safetensors")
    with open(os.path.join(directory, "model.safetensors"), "rb") as f:
        raw = f.read()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    edit(header)
    encoded = json.dumps(header).encode()
    os.remove(path)
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little") + encoded + raw[8 + length:])
    return out


# Writes a checkpoint with the real writer (three shards) and SIGKILLs itself while the third is
# being written: the temporaries of that save stay behind. Only presets/ is imported (no Keras).
_KILLED_SAVE = r"""
import os, signal, sys, types
repo, directory, shard_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
package = types.ModuleType("presets"); package.__path__ = [os.path.join(repo, "presets")]
sys.modules["presets"] = package
import numpy as np
from presets.writers import save_safetensors_checkpoint
layout = {f"w{i}": ((256, 256), np.dtype("float32")) for i in range(3)}
def fetch(name):
    if name == "w2":
        os.kill(os.getpid(), signal.SIGKILL)
    return np.ones((256, 256), "float32")
save_safetensors_checkpoint(directory, layout, fetch, max_shard_size=shard_size)
"""


def killed_save(shard_size):
    directory = tempfile.mkdtemp(prefix="hostile_killed_")
    done = subprocess.run([sys.executable, "-c", _KILLED_SAVE, PACKAGE_ROOT, directory, str(shard_size)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != -signal.SIGKILL:
        raise CaseFailed(f"the save was not killed (rc {done.returncode}): {done.stderr[-300:]}")
    stale = [n for n in os.listdir(directory) if n.endswith(".tmp")]
    if not stale:
        raise CaseFailed("the killed save left no temporaries to clean up")
    return directory


def assert_stale_removed_by_next_save(directory):
    deberta_model().save_pretrained(directory)
    left = [n for n in os.listdir(directory) if n.endswith(".tmp")]
    if left:
        raise CaseFailed(f"temporaries of the killed save survived a successful save: {left}")


# --- the cases -------------------------------------------------------------------------------------
def from_deberta_config(**changes):
    import keras_deberta as kd

    return lambda: kd.TFDebertaV2ForSequenceClassification.from_pretrained(copy_with_config(deberta_dir(), **changes))


def config_error():
    # presets.config_bounds.ConfigFieldError derives from it; CheckpointError is what a caller of
    # from_pretrained / load_model catches for any unusable checkpoint.
    from presets.errors import CheckpointError

    return CheckpointError


def case_config_position_buckets_huge():
    expect_error(from_deberta_config(position_buckets=10**9), config_error(), "position_buckets")


def case_config_max_position_embeddings_huge():
    expect_error(from_deberta_config(max_position_embeddings=10**9), config_error(), "max_position_embeddings")


def case_config_num_hidden_layers_huge():
    expect_error(from_deberta_config(num_hidden_layers=10**6), config_error(), "num_hidden_layers")


def case_config_vocab_size_huge():
    expect_error(from_deberta_config(vocab_size=10**8), config_error(), "vocab_size")


def case_config_vocab_size_beyond_checkpoint():
    # Within the documented maximum, but 2**21 rows where the checkpoint's embedding has 99.
    expect_error(from_deberta_config(vocab_size=2**21), config_error(), "vocab_size", "word_embeddings")


def case_config_num_hidden_layers_beyond_checkpoint():
    expect_error(from_deberta_config(num_hidden_layers=500), config_error(), "num_hidden_layers", "holds 2")


def case_config_deepseek_num_hidden_layers_huge():
    import keras_deepseek as ks

    expect_error(lambda: ks.TFDeepseekV2ForCausalLM.from_pretrained(
        copy_with_config(deepseek_dir(), num_hidden_layers=10**6)), config_error(), "num_hidden_layers")


def case_config_deepseek_vocab_size_beyond_checkpoint():
    import keras_deepseek as ks

    expect_error(lambda: ks.TFDeepseekV2ForCausalLM.from_pretrained(
        copy_with_config(deepseek_dir(), vocab_size=2**21)), config_error(), "vocab_size", "embed_tokens")


def case_config_layer_norm_eps_string():
    expect_error(from_deberta_config(layer_norm_eps="x"), config_error(), "layer_norm_eps", "str")


def case_config_pos_att_type_int():
    expect_error(from_deberta_config(pos_att_type=7), config_error(), "pos_att_type")


def case_config_id2label_non_integer_keys():
    expect_error(from_deberta_config(id2label={"a": "x", "b": "y"}), config_error(), "id2label", "'a'")


def case_config_num_labels_zero():
    import keras_deberta as kd
    from harness import deberta_v2_config

    # transformers allows num_labels=0 in a config; a classifier cannot be built from it.
    config = deberta_v2_config(num_labels=0)
    expect_error(lambda: kd.TFDebertaV2ForSequenceClassification(config), config_error(), "num_labels")


def case_config_type_vocab_size_negative():
    expect_error(from_deberta_config(type_vocab_size=-1), config_error(), "type_vocab_size")


def case_config_deeply_nested_json():
    import keras_deberta as kd
    from presets.errors import CheckpointError

    directory = copy_with_config(deberta_dir())
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    expect_error(lambda: kd.TFDebertaV2ForSequenceClassification.from_pretrained(directory), CheckpointError,
                 "config.json")


def case_config_python_relative_span_huge():
    import keras_deberta as kd
    from harness import deberta_v2_config

    config = deberta_v2_config(position_buckets=10**9)  # a Python config may hold it; a model may not
    expect_error(lambda: kd.TFDebertaV2Model(config), config_error(), "position_buckets")


def load_keras(**changes):
    import keras

    return lambda: keras.saving.load_model(keras_file_with(**changes))


def case_keras_num_hidden_layers_huge():
    expect_error(load_keras(num_hidden_layers=10**6), config_error(), "num_hidden_layers")


def case_keras_num_hidden_layers_beyond_weights():
    # Within the documented maximum; the file's weights hold 2 layers' worth.
    expect_error(load_keras(num_hidden_layers=1000), config_error(), "stored weights")


def case_keras_vocab_size_huge():
    expect_error(load_keras(vocab_size=10**8), config_error(), "vocab_size")


def case_keras_pos_att_type_int():
    expect_error(load_keras(pos_att_type=7), config_error(), "pos_att_type")


def case_checkpoint_overlapping_offsets():
    import keras_deberta as kd
    from presets.errors import CheckpointError

    def point_bias_into_embeddings(header):
        bias = header["deberta.embeddings.LayerNorm.bias"]
        size = bias["data_offsets"][1] - bias["data_offsets"][0]
        start = header["deberta.embeddings.word_embeddings.weight"]["data_offsets"][0]
        bias["data_offsets"] = [start, start + size]

    directory = rewrite_safetensors_header(deberta_dir(), point_bias_into_embeddings)
    expect_error(lambda: kd.TFDebertaV2ForSequenceClassification.from_pretrained(directory), CheckpointError,
                 "overlaps")


def case_checkpoint_gap_between_tensors():
    from presets.errors import CheckpointError
    from presets.readers import open_checkpoint

    def drop_first_tensor(header):  # its bytes stay in the file, owned by no tensor
        first = min((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][0])
        del header[first]

    directory = rewrite_safetensors_header(deberta_dir(), drop_first_tensor)
    expect_error(lambda: open_checkpoint(directory), CheckpointError, "gap")


def case_checkpoint_ignored_tensors_warn():
    import keras_deberta as kd

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kd.TFDebertaV2Model.from_pretrained(deberta_dir())  # a classifier checkpoint: its head is unused
    if not any("classifier.weight" in str(w.message) for w in caught):
        raise CaseFailed(f"no warning named the ignored head tensors: {[str(w.message)[:80] for w in caught]}")


@fixture
def killed_sharded_save():
    return killed_save(shard_size=300_000)


@fixture
def killed_single_file_save():
    return killed_save(shard_size=10**9)


def case_stale_temporaries_of_killed_sharded_save():
    assert_stale_removed_by_next_save(killed_sharded_save())


def case_stale_temporaries_of_killed_single_file_save():
    assert_stale_removed_by_next_save(killed_single_file_save())


def tokenizer_case(name):
    return {"v1": v1_tokenizer, "v2": v2_tokenizer}[name]()


def pad_to_huge_max_length(version):
    tok = tokenizer_case(version)
    expect_error(lambda: tok("hi", padding="max_length", max_length=10**9), ValueError, "max_length=1000000000")
    expect_error(lambda: tok.pad({"input_ids": [[5, 6]]}, padding="max_length", max_length=10**9), ValueError,
                 "max_length=1000000000")


def max_length_below_special_tokens(version):
    tok = tokenizer_case(version)
    for max_length in (1, 0, -1):
        expect_error(lambda: tok("hello there my friend", truncation=True, max_length=max_length), ValueError,
                     "max_length")


def negative_stride(version):
    tok = tokenizer_case(version)
    expect_error(lambda: tok("hello there", truncation=True, max_length=4, stride=-2,
                             return_overflowing_tokens=True), ValueError, "stride")


def bad_pad_to_multiple_of(version):
    tok = tokenizer_case(version)
    for value in (0, -3):
        expect_error(lambda: tok(["hi", "hello there"], padding=True, pad_to_multiple_of=value), ValueError,
                     "pad_to_multiple_of")


def lone_surrogate(version):
    expect_error(lambda: tokenizer_case(version)(["fine", "a\ud800b"]), ValueError, "text 1", "character 1")


def decode_floats(version):
    expect_error(lambda: tokenizer_case(version).decode([1.5, 2.7]), TypeError, "integer")


for _version in ("v1", "v2"):
    for _check in (pad_to_huge_max_length, max_length_below_special_tokens, negative_stride, bad_pad_to_multiple_of,
                   lone_surrogate, decode_floats):
        globals()[f"case_tokenizer_{_version}_{_check.__name__}"] = (
            lambda check=_check, version=_version: check(version))


def case_model_inputs_embeds_wrong_width():
    import numpy as np

    for model in (deberta_model(), deepseek_model()):
        expect_error(lambda: model(inputs_embeds=np.zeros((1, 4, 7), "float32")), ValueError,
                     "inputs_embeds", "last axis")


def case_model_python_rows_as_input_ids():
    import numpy as np
    from keras import ops

    # The reading is TFPreTrainedModel.__call__'s, shared by both families; DeBERTa's forward is the
    # cheap one to run twice (DeepSeek's eager MoE takes most of a second per call on JAX).
    rows = [[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]]
    model = deberta_model()
    got = ops.convert_to_numpy(model(rows)[0])
    want = ops.convert_to_numpy(model(np.array(rows, "int32"))[0])
    if not np.array_equal(got, want):
        raise CaseFailed("a list of token rows gave another answer than the same rows as an array")


def case_generate_empty_batch():
    import numpy as np

    out = np.asarray(deepseek_model().generate(np.zeros((0, 3), "int32"), max_new_tokens=2))
    if out.shape != (0, 3):
        raise CaseFailed(f"an empty batch gave shape {out.shape}, expected (0, 3)")


def case_generate_right_padding_warns():
    import numpy as np

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deepseek_model().generate(np.array([[5, 6, 0], [5, 6, 7]]), attention_mask=np.array([[1, 1, 0], [1, 1, 1]]),
                                  max_new_tokens=1)
    if not any("right-padding" in str(w.message) for w in caught):
        raise CaseFailed("no right-padding warning")


def case_generate_token_ids_out_of_range():
    import numpy as np

    model, prompt = deepseek_model(), np.array([[5, 6]])
    expect_error(lambda: model.generate(prompt, max_new_tokens=1, eos_token_id=10**6), ValueError, "eos_token_id")
    expect_error(lambda: model.generate(prompt, max_new_tokens=1, pad_token_id=-1), ValueError, "pad_token_id")


def case_generate_eos_token_id_string():
    import numpy as np

    expect_error(lambda: deepseek_model().generate(np.array([[5, 6]]), max_new_tokens=1, eos_token_id="x"),
                 TypeError, "eos_token_id")


def serving_error(signature, *fragments, **inputs):
    import tensorflow as tf

    expect_error(lambda: saved_model().signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}),
                 tf.errors.InvalidArgumentError, *fragments)


def case_serving_text_empty_batch():
    import numpy as np

    serving_error("serve_text", "batch is empty", text=np.array([], dtype=object).astype(bytes))


def case_serving_default_zero_length():
    import numpy as np

    empty = np.zeros((1, 0), "int32")
    serving_error("serving_default", "sequence length is 0", input_ids=empty, attention_mask=empty,
                  token_type_ids=empty)


def case_serving_default_rank_3():
    import numpy as np

    ids = np.ones((1, 2, 3), "int32")
    serving_error("serving_default", "must have shape [batch, length]", input_ids=ids, attention_mask=ids,
                  token_type_ids=ids)


def case_serving_text_rank_2():
    serving_error("serve_text", "text must have shape [batch]", text=[[b"good", b"bad"]])


# --- running ---------------------------------------------------------------------------------------
def _on_alarm(signum, frame):
    raise CaseTimeout(f"ran past {CASE_TIMEOUT_S} s")


def run_case(name):
    function = globals().get("case_" + name)
    if function is None:
        return {"error": f"no case named {name}", "seconds": 0.0}
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        function()
        error = None
    except CaseFailed as e:
        error = str(e)
    except BaseException as e:  # a fixture or the case itself broke
        error = f"{type(e).__name__}: {str(e)[:300]}\n{traceback.format_exc()[-1500:]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"error": error, "seconds": time.perf_counter() - start}


@fixture
def warm_models():
    """Each model called, generating and saved once at the cases' shapes: JAX and TF compile on
    the first call, which is no part of what a case measures."""
    import numpy as np

    rows = np.full((2, 5), 5, "int32")
    deberta_model()(rows)
    deepseek_model()(rows)
    deepseek_model().generate(rows[:, :3], max_new_tokens=1)
    deberta_model().save_pretrained(tempfile.mkdtemp(prefix="hostile_warm_"))
    return True


def prepare(name):
    """Makes the fixtures a case uses before its clock starts (fixtures cost seconds of building,
    compiling and exporting; the case's own work is what must stay under a second)."""
    if "keras" in name:
        keras_file()
    if "deepseek" in name:
        deepseek_dir()
    if name == "stale_temporaries_of_killed_sharded_save":  # the kill is the setup; the next save is the case
        killed_sharded_save()
    if name == "stale_temporaries_of_killed_single_file_save":
        killed_single_file_save()
    if name.startswith(("config_", "checkpoint_", "model_", "stale_", "generate_")):
        deberta_dir()
        warm_models()
    if name.startswith("tokenizer_v1"):
        v1_tokenizer()
    if name.startswith("tokenizer_v2"):
        v2_tokenizer()
    if name.startswith("serving_"):
        saved_model()


def main():
    out_path, names = sys.argv[2], [n for n in sys.argv[3].split(",") if n]
    sys.path[:0] = [PACKAGE_ROOT, TESTS]
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    signal.signal(signal.SIGALRM, _on_alarm)
    results = {}
    for name in names:
        print(name, file=sys.stderr, flush=True)  # the culprit if the process dies
        try:
            prepare(name)
        except BaseException as e:
            results[name] = {"error": f"fixture failed: {type(e).__name__}: {str(e)[:300]}", "seconds": 0.0}
            continue
        results[name] = run_case(name)
        with open(out_path, "w") as f:  # rewritten after each case: a crash keeps the earlier ones
            json.dump(results, f)
    with open(out_path, "w") as f:
        json.dump(results, f)


def list_cases():
    return sorted(n[len("case_"):] for n in globals() if n.startswith("case_"))


if __name__ == "__main__":
    main()

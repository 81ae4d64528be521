"""Loading the same weights from every checkpoint format, and refusing bad checkpoints clearly."""

import json
import os
import pickle
import shutil
import zipfile

import keras
import numpy as np
import pytest

from hf_reference import V2_VARIANTS, assert_close, build_hf_model, hf_config, hf_forward
from keras_deberta import CheckpointError, CheckpointNotFoundError, DebertaV2Config, TFDebertaV2Model
from presets import read_safetensors

VARIANT = "separate_both_buckets"  # has pos_key_proj / pos_query_proj, token types and positions
NGIE = "v2_xlarge_like_ngie"  # has the conv kernel (a 3-D transpose)


@pytest.fixture(scope="module")
def hf_models():
    return {name: build_hf_model(hf_config(**V2_VARIANTS[name]), seed=3) for name in (VARIANT, NGIE)}


def _save_safetensors_dir(model, directory):
    model.save_pretrained(directory)
    return str(directory)


def _hidden(model, ids, types=None):
    return keras.ops.convert_to_numpy(model(ids, token_type_ids=types).last_hidden_state)


def _ids(config):
    ids = np.random.RandomState(7).randint(0, config.vocab_size, size=(2, 13)).astype("int32")
    types = np.random.RandomState(8).randint(0, 2, size=ids.shape).astype("int32") if config.type_vocab_size else None
    return ids, types


# --- formats -------------------------------------------------------------------------------------


def _write_torch_bin(model, directory):
    import torch

    model.config.save_pretrained(directory)
    torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))


def _write_sharded_bin(model, directory):
    import torch

    model.config.save_pretrained(directory)
    state = model.state_dict()
    names = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    weight_map = {}
    for filename, part in halves.items():
        torch.save({n: state[n] for n in part}, os.path.join(directory, filename))
        weight_map.update({n: filename for n in part})
    with open(os.path.join(directory, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def _pt_to_hf_tf_name(pt_name, scope="tf_deberta_v2_model"):
    """HF TF variable name of a PyTorch DeBERTa-v2 parameter (the TF classes' naming scheme)."""
    parts = ("deberta." + pt_name).split(".")
    leaf = parts[-1]
    parents = parts[:-1]
    parents = [p.replace("pos_key_proj", "pos_proj").replace("pos_query_proj", "pos_q_proj") for p in parents]
    out = []
    for i, p in enumerate(parents):
        if p.isdigit():
            out[-1] = out[-1] + "_._" + p
        else:
            out.append(p)
    parent = parents[-1]
    if parent == "rel_embeddings":
        return "/".join([scope] + out[:-1] + ["rel_embeddings.weight:0"]), None
    if parent == "LayerNorm":
        leaf = {"weight": "gamma", "bias": "beta"}[leaf]
    elif parent in ("position_embeddings", "token_type_embeddings"):
        leaf = "embeddings"
    elif parent == "word_embeddings":
        leaf = "weight"
    elif leaf == "weight":
        leaf = "kernel"
    return "/".join([scope] + out + [leaf + ":0"]), leaf == "kernel"


def _write_hf_tf_h5(model, directory):
    """tf_model.h5 in the layout HF's TF `save_pretrained` wrote (Keras-2 save_weights):
    root attr layer_names, group per top-level layer with attr weight_names, nested datasets;
    Dense kernels [in, out], Conv kernels [k, in, out], LayerNorm gamma/beta."""
    import h5py

    model.config.save_pretrained(directory)
    names = []
    with h5py.File(os.path.join(directory, "tf_model.h5"), "w") as f:
        f.attrs["layer_names"] = [b"deberta"]
        group = f.create_group("deberta")
        for pt_name, tensor in model.state_dict().items():
            value = tensor.numpy()
            tf_name, is_kernel = _pt_to_hf_tf_name(pt_name)
            if is_kernel:
                value = value.T if value.ndim == 2 else np.transpose(value, (2, 1, 0))
            group.create_dataset(tf_name, data=value)
            names.append(tf_name.encode())
        group.attrs["weight_names"] = names


def _write_sharded_safetensors(model, directory):
    model.save_pretrained(directory, max_shard_size="20KB")
    assert os.path.exists(os.path.join(directory, "model.safetensors.index.json"))


WRITERS = {
    "safetensors": _save_safetensors_dir,
    "pytorch_model.bin": _write_torch_bin,
    "sharded_safetensors": _write_sharded_safetensors,
    "sharded_bin": _write_sharded_bin,
    "tf_model.h5": _write_hf_tf_h5,
}


@pytest.mark.parametrize("variant", [VARIANT, NGIE])
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_loads_identically(fmt, variant, hf_models, tmp_path):
    hf_model = hf_models[variant]
    directory = tmp_path / fmt
    directory.mkdir()
    WRITERS[fmt](hf_model, str(directory))
    ids, types = _ids(hf_model.config)
    ref = hf_forward(hf_model, ids, token_type_ids=types).last_hidden_state.numpy()
    model = TFDebertaV2Model.from_pretrained(str(directory))
    assert_close(_hidden(model, ids, types), ref, what=f"{fmt} {variant}")


def test_base_model_loads_from_a_task_checkpoint(tmp_path):
    config = hf_config(**V2_VARIANTS["v3_like"])
    mlm = build_hf_model(config, cls_name="DebertaV2ForMaskedLM", seed=5)
    mlm.save_pretrained(tmp_path)
    ids, _ = _ids(config)
    ref = hf_forward(mlm.deberta, ids).last_hidden_state.numpy()
    model = TFDebertaV2Model.from_pretrained(str(tmp_path))
    assert_close(_hidden(model, ids), ref, what="base from MLM checkpoint")
    assert any(n.startswith("cls.") or n.startswith("lm_predictions.") for n in model.load_info["ignored"])


def test_save_pretrained_round_trips_through_transformers(hf_models, tmp_path):
    import transformers

    hf_model = hf_models[NGIE]
    hf_model.save_pretrained(tmp_path / "src")
    ours = TFDebertaV2Model.from_pretrained(str(tmp_path / "src"))
    ours.save_pretrained(str(tmp_path / "out"))
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".tmp")]
    reloaded = transformers.DebertaV2Model.from_pretrained(str(tmp_path / "out")).eval()
    want_state, got_state = hf_model.state_dict(), reloaded.state_dict()
    assert set(got_state) == set(want_state)
    for key, value in want_state.items():
        np.testing.assert_array_equal(got_state[key].numpy(), value.numpy(), err_msg=key)
    ids, types = _ids(hf_model.config)
    want = hf_forward(hf_model, ids, token_type_ids=types).last_hidden_state.numpy()
    got = hf_forward(reloaded, ids, token_type_ids=types).last_hidden_state.numpy()
    assert_close(got, want, tol=1e-6, what="round trip")


# --- bad checkpoints -----------------------------------------------------------------------------


@pytest.fixture
def good_dir(hf_models, tmp_path):
    directory = tmp_path / "good"
    hf_models[VARIANT].save_pretrained(directory)
    return directory


def _rewrite_safetensors(directory, edit):
    from safetensors.numpy import save_file

    path = os.path.join(directory, "model.safetensors")
    tensors = read_safetensors(path)
    edit(tensors)
    save_file(tensors, path)


def test_missing_directory():
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint directory"):
        TFDebertaV2Model.from_pretrained("/nonexistent/deberta-dir")


def test_hub_id_offline_gives_a_clear_message():
    with pytest.raises(CheckpointNotFoundError, match="Hub"):
        TFDebertaV2Model.from_pretrained("microsoft/deberta-v3-definitely-not-cached")


def test_no_weights_file(good_dir):
    os.remove(good_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="no weights file"):
        TFDebertaV2Model.from_pretrained(str(good_dir))


def test_config_of_another_model_type(good_dir):
    config = json.loads((good_dir / "config.json").read_text())
    config["model_type"] = "bert"
    (good_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'bert'"):
        TFDebertaV2Model.from_pretrained(str(good_dir))


def test_missing_tensor_is_named(good_dir):
    name = "encoder.layer.1.attention.self.value_proj.weight"
    _rewrite_safetensors(good_dir, lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=r"missing tensors: .*layer\.1\.attention\.self\.value_proj\.weight"):
        TFDebertaV2Model.from_pretrained(str(good_dir))


def test_unexpected_tensor_is_named(good_dir):
    _rewrite_safetensors(good_dir, lambda t: t.update({"encoder.layer.9.extra.weight": np.zeros(3, "float32")}))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: encoder\.layer\.9\.extra\.weight"):
        TFDebertaV2Model.from_pretrained(str(good_dir))


def test_misshaped_tensor_is_named(good_dir):
    name = "encoder.layer.0.intermediate.dense.weight"
    # The input axis: a config size larger than the file's (the output axis here) is refused before
    # building, by presets/config_bounds.py (tests/test_hostile_inputs.py).
    _rewrite_safetensors(good_dir, lambda t: t.update({name: np.zeros((37, 5), "float32")}))
    with pytest.raises(CheckpointError, match=r"intermediate\.dense\.weight has shape \(37, 5\).*\(37, 32\)"):
        TFDebertaV2Model.from_pretrained(str(good_dir))


@pytest.mark.parametrize("writer", ["safetensors", "pytorch_model.bin"])
def test_truncated_file(writer, hf_models, tmp_path):
    WRITERS[writer](hf_models[VARIANT], str(tmp_path))
    path = tmp_path / ("model.safetensors" if writer == "safetensors" else "pytorch_model.bin")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated|corrupt|missing"):
        TFDebertaV2Model.from_pretrained(str(tmp_path))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_runs_nothing(good_dir, tmp_path):
    marker = tmp_path / "pwned"
    os.remove(good_dir / "model.safetensors")
    with zipfile.ZipFile(good_dir / "pytorch_model.bin", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Exploit(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load 'posix.system'|refusing to load 'os.system'"):
        TFDebertaV2Model.from_pretrained(str(good_dir))
    assert not marker.exists()


def test_remote_code_is_never_imported(good_dir, tmp_path):
    marker = tmp_path / "imported"
    (good_dir / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((good_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (good_dir / "config.json").write_text(json.dumps(config))
    model = TFDebertaV2Model.from_pretrained(str(good_dir))
    assert not marker.exists()
    assert model.config.auto_map == {"AutoModel": "modeling_evil.EvilModel"}  # kept, never run


# --- bad inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    config = DebertaV2Config(**hf_config(**V2_VARIANTS["separate_both_buckets"]).to_dict())
    return TFDebertaV2Model(config)


@pytest.mark.parametrize("bad", [99, 1000, -1])
def test_token_ids_out_of_range(small_model, bad):
    ids = np.array([[1, 2, bad, 4]], dtype="int32")
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 99\)"):
        small_model(ids)


def test_token_ids_out_of_range_inside_a_compiled_function(small_model):
    ids = np.array([[1, 2, 150, 4]], dtype="int32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: small_model(x).last_hidden_state)
        with pytest.raises(tf.errors.InvalidArgumentError, match="input_ids must be < 99"):
            fn(tf.constant(ids))
    elif backend == "jax":
        import jax

        fn = jax.jit(lambda x: small_model(x).last_hidden_state)
        fn(np.array([[1, 2, 3, 4]], dtype="int32"))  # in range: fine
        with pytest.raises(Exception, match=r"input_ids must lie in \[0, 99\)"):
            jax.block_until_ready(fn(ids))
    else:  # torch runs eagerly: the eager check applies
        with pytest.raises(ValueError, match="input_ids"):
            small_model(ids)


def test_token_type_ids_out_of_range(small_model):
    ids = np.array([[1, 2, 3]], dtype="int32")
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 2\)"):
        small_model(ids, token_type_ids=np.array([[0, 1, 2]], dtype="int32"))


def test_sequence_longer_than_absolute_positions(small_model):
    ids = np.ones((1, 65), dtype="int32")
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        small_model(ids)


def test_mask_shape_must_match_ids(small_model):
    ids = np.ones((2, 6), dtype="int32")
    with pytest.raises(ValueError, match="attention_mask has shape"):
        small_model(ids, attention_mask=np.ones((2, 5), dtype="int32"))


def test_ids_must_be_2d_integers(small_model):
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        small_model(np.ones((6,), dtype="int32"))
    with pytest.raises(ValueError, match="integers"):
        small_model(np.ones((1, 6), dtype="float32"))


def test_safetensors_tensors_at_unaligned_offsets_read_exactly(tmp_path):
    """The reader hands out views of the mapped file; a tensor whose offset is not a multiple of its
    item size (legal in the format: safetensors' own writer orders tensors to avoid it, others may
    not) is copied instead, and reads the same values."""
    import struct

    flag = np.array([1], dtype=np.uint8)  # 1 byte first: every later offset is odd
    weights = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    half = np.array([1.5, -2.25], dtype=np.float16)
    header = {
        "flag": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "weights": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]},
        "half": {"dtype": "F16", "shape": [2], "data_offsets": [25, 29]},
    }
    blob = json.dumps(header).encode()
    path = tmp_path / "unaligned.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + flag.tobytes() + weights.tobytes() + half.tobytes())
    from presets.sources import open_safetensors

    lazy = open_safetensors(str(path))
    tensors = {name: t.read() for name, t in lazy.items()}  # what the loader hands the backends
    np.testing.assert_array_equal(tensors["flag"], flag)
    np.testing.assert_array_equal(tensors["weights"], weights)
    np.testing.assert_array_equal(tensors["half"], half)
    assert tensors["weights"].flags.aligned and tensors["half"].flags.aligned
    np.testing.assert_array_equal(read_safetensors(str(path))["weights"], weights)

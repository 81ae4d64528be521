"""from_pretrained(..., quantize="int8" | "int4") quantizes while loading: every variable, dtype
policy and logit equals from_pretrained then model.quantize bit for bit (both families, experts
included, sharded checkpoints, float32 and bf16), bad requests are refused before anything is read,
and (slow) the load's peak memory stays below the float model's size.

Checkpoints are written by transformers from its own models, every parameter perturbed."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import deepseek_reference as ds
import harness
import hf_reference as hr
import keras_deberta as kd
import keras_deepseek as ks
from harness import example_inputs, to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _by_path(model):
    """{weight path below the model: variable} (the model's own auto-numbered name dropped; dropout
    seed states, which depend on the global seed at construction, are not weights)."""
    return {v.path.split("/", 1)[1]: v for v in model.weights}


def assert_bit_identical(got, want):
    """Same variables (paths, shapes, dtypes, bytes), same per-layer quantization record."""
    g, w = _by_path(got), _by_path(want)
    assert sorted(g) == sorted(w), sorted(set(g) ^ set(w))
    for path, variable in w.items():
        a, b = to_numpy(g[path]), to_numpy(variable)
        assert a.dtype == b.dtype and a.shape == b.shape, (path, a.dtype, b.dtype, a.shape, b.shape)
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), path
    assert got.get_config().get("quantized_layers") == want.get_config().get("quantized_layers")
    assert got.get_config()["quantized_layers"], "nothing was quantized"


def _checkpoint(tmp_path, hf_model, name, shard="60KB"):
    directory = str(tmp_path / name)
    hf_model.save_pretrained(directory, max_shard_size=shard)  # several shards: layers straddle files
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("quantized_loading")
    return {
        "deberta_v2": _checkpoint(tmp, hr.build_hf_model(hr.hf_config(**hr.V2_VARIANTS["v2_xlarge_like_ngie"]),
                                                         "DebertaV2ForMaskedLM", seed=3), "v2"),
        "deberta_v1": _checkpoint(tmp, hr.build_hf_model(hr.hf_v1_config(**hr.V1_VARIANTS["talking_heads"],
                                                                         num_labels=3),
                                                         "DebertaForSequenceClassification", seed=4), "v1"),
        "deepseek_lite": _checkpoint(tmp, ds.build_hf_model(ds.hf_config("lite"), seed=5), "lite"),
        "deepseek_v2_bf16": _checkpoint(tmp, ds.build_hf_model(ds.hf_config("v2"), seed=6).to(torch.bfloat16),
                                        "v2_bf16"),
    }


CASES = [
    ("deberta_v2", kd.TFDebertaV2ForMaskedLM, None),
    ("deberta_v1", kd.TFDebertaForSequenceClassification, None),
    ("deepseek_lite", ks.TFDeepseekV2ForCausalLM, None),
    ("deepseek_v2_bf16", ks.TFDeepseekV2ForCausalLM, "bfloat16"),  # bf16 on disk and in the variables
]


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("checkpoint, cls, dtype", CASES, ids=[c[0] for c in CASES])
def test_quantize_while_loading_equals_load_then_quantize(checkpoints, checkpoint, cls, dtype, mode):
    directory = checkpoints[checkpoint]
    want = cls.from_pretrained(directory, dtype=dtype)
    want.quantize(mode)
    got = cls.from_pretrained(directory, dtype=dtype, quantize=mode)
    assert_bit_identical(got, want)
    if isinstance(got, ks.TFDeepseekV2ForCausalLM):
        experts = got.model.decoder_layers[-1].mlp.experts
        assert experts.quantization_mode == mode and str(experts.gate_kernel.dtype) == "int8"
        assert str(got.model.decoder_layers[-1].mlp.gate.kernel.dtype) == "float32"  # router stays float
    inputs = example_inputs(got)
    np.testing.assert_array_equal(to_numpy(got(inputs).logits), to_numpy(want(inputs).logits))
    assert got.config.dtype == want.config.dtype


@pytest.mark.parametrize("cls", harness.ALL_TASK_CLASSES, ids=harness.class_id)
def test_every_task_class_loads_quantized(cls, tmp_path):
    # Each task class from a checkpoint of its own head (written by save_pretrained of a perturbed model).
    keras.utils.set_random_seed(0)
    source = harness.perturb_variables(cls(harness.tiny_config(cls)))
    source.save_pretrained(str(tmp_path), max_shard_size="40KB")
    want = cls.from_pretrained(str(tmp_path))
    want.quantize("int8")
    got = cls.from_pretrained(str(tmp_path), quantize="int8")
    assert_bit_identical(got, want)
    assert not got.load_info["missing"]
    inputs = example_inputs(got)
    primary = got.primary_output_names[0]
    np.testing.assert_array_equal(to_numpy(got(inputs)[primary]), to_numpy(want(inputs)[primary]))


def test_a_missing_head_is_initialised_then_quantized(checkpoints):
    # A base checkpoint into a task class: the new head is drawn from its initializer, then quantized.
    with pytest.warns(UserWarning, match="newly initialised"):
        model = ks.TFDeepseekV2ForSequenceClassification.from_pretrained(
            checkpoints["deepseek_lite"], num_labels=3, quantize="int8")
    assert model.score.quantization_mode == "int8" and str(model.score._kernel.dtype) == "int8"
    assert np.abs(to_numpy(model.score.kernel_scale)).max() > 0
    reference = ks.TFDeepseekV2ForSequenceClassification.from_pretrained(checkpoints["deepseek_lite"], num_labels=3)
    reference.quantize("int8")
    loaded = {p: v for p, v in _by_path(reference).items() if not p.startswith("score/")}
    got = _by_path(model)
    for path, variable in loaded.items():
        assert np.array_equal(to_numpy(got[path]), to_numpy(variable)), path


@pytest.mark.parametrize("bad", ["int2", "float8", "gptq", "INT8", True, 8])
def test_unknown_quantize_mode_is_refused_before_anything_is_read(bad, tmp_path):
    missing = str(tmp_path / "does-not-exist")  # a read would raise CheckpointNotFoundError instead
    with pytest.raises(ValueError, match="quantize must be one of"):
        ks.TFDeepseekV2ForCausalLM.from_pretrained(missing, quantize=bad)


def test_int8_with_a_float16_compute_dtype_is_refused_before_tensors_are_read(checkpoints, monkeypatch):
    import presets.mapping

    def no_read(tensor):
        raise AssertionError("a tensor was read")

    monkeypatch.setattr(presets.mapping, "materialise", no_read)
    with pytest.raises(ValueError, match="float16 compute dtype"):
        ks.TFDeepseekV2ForCausalLM.from_pretrained(checkpoints["deepseek_lite"], dtype="float16", quantize="int8")


def test_a_quantized_load_leaves_no_variable_pending(checkpoints):
    # Keras allocates every variable it still lists as pending when a stateless scope closes; none
    # of this model's (nor the float kernels it never had) may be on that list.
    model = ks.TFDeepseekV2ForCausalLM.from_pretrained(checkpoints["deepseek_lite"], quantize="int4")
    with keras.StatelessScope():
        pass  # closing it allocates whatever is pending
    inputs = example_inputs(model)
    assert np.isfinite(to_numpy(model(inputs).logits)).all()


# --- memory: the load's peak stays below the float model's size ---------------------------------
_PEAK = textwrap.dedent("""
    import json, sys
    import keras_deepseek as ks
    kind, directory = sys.argv[1], sys.argv[2]

    def status(field):  # kB in /proc/self/status
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":")) * 1024

    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident size: imports no longer count
    model = ks.TFDeepseekV2ForCausalLM.from_pretrained(directory, quantize=None if kind == "float" else kind)
    print(json.dumps({"peak": status("VmHWM") - before}))
""")


def _load_peak(kind, directory):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _PEAK, kind, directory], env=env, capture_output=True,
                         text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="measures the peak with Linux's clear_refs")
def test_quantized_load_peak_stays_below_the_float_model(tmp_path):
    # A ~450 MB float32 DeepSeek-V2 (7 MoE layers of 16 experts; a small vocabulary, so no single float
    # kernel dominates: each is quantized by Keras with a few float32 temporaries), in 100 MB shards.
    config = ks.DeepseekV2Config(**{**ds.LITE, "vocab_size": 8000, "hidden_size": 512, "intermediate_size": 1024,
                                    "moe_intermediate_size": 512, "n_routed_experts": 16, "num_hidden_layers": 8,
                                    "num_attention_heads": 8, "kv_lora_rank": 128, "qk_nope_head_dim": 32,
                                    "qk_rope_head_dim": 16, "v_head_dim": 32})
    model = ks.TFDeepseekV2ForCausalLM(config)
    float_bytes = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
    model.save_pretrained(str(tmp_path), max_shard_size="100MB")
    del model
    assert float_bytes > 300e6
    float_peak = _load_peak("float", str(tmp_path))
    int8_peak = _load_peak("int8", str(tmp_path))
    int4_peak = _load_peak("int4", str(tmp_path))
    print(f"float model {float_bytes / 1e6:.0f} MB; load peak above the imports: float {float_peak / 1e6:.0f} MB, "
          f"int8 {int8_peak / 1e6:.0f} MB, int4 {int4_peak / 1e6:.0f} MB")
    assert float_peak >= 0.9 * float_bytes  # the measurement sees a float model
    # Below the float model's own bytes on every backend (a float load needs more than them). What
    # the quantized loads hold beyond their integer weights: the mapped shard's pages, one layer's
    # float kernel with Keras' float32 temporaries, and on JAX the eager runtime's own buffers.
    assert int8_peak < float_bytes
    assert int4_peak < int8_peak


# --- under a keras.distribution layout (JAX, 2 simulated CPU devices in a subprocess) -----------
_DISTRIBUTED = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import keras, numpy as np
    import keras_deepseek as ks
    from harness import example_inputs, to_numpy
    directory = sys.argv[1]
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), keras.distribution.list_devices())
    layout = ks.TFDeepseekV2ForCausalLM.get_layout_map(mesh, expert_parallel_dim_name="model")
    with keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch").scope():
        for mode in ("int8", "int4"):
            want = ks.TFDeepseekV2ForCausalLM.from_pretrained(directory)
            want.quantize(mode)
            got = ks.TFDeepseekV2ForCausalLM.from_pretrained(directory, quantize=mode)
            g = {v.path.split("/", 1)[1]: v for v in got.weights}
            for path, v in ((v.path.split("/", 1)[1], v) for v in want.weights):
                assert g[path].value.sharding.is_equivalent_to(v.value.sharding, len(v.shape)), path
                assert np.array_equal(to_numpy(g[path]), to_numpy(v)), path
            experts = got.model.decoder_layers[-1].mlp.experts
            assert str(experts.gate_kernel.dtype) == "int8"
            assert {s.data.shape[0] for s in experts.gate_kernel.value.addressable_shards} == {3}  # 6 experts / 2
            x = example_inputs(got)
            assert np.array_equal(to_numpy(got(x).logits), to_numpy(want(x).logits))
    print("ok")
""")


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution's model parallelism runs on JAX")
def test_quantize_while_loading_under_a_model_parallel_layout(tmp_path):
    # Every variable laid out as load-then-quantize lays it out, the experts split over the devices.
    directory = _checkpoint(tmp_path, ds.build_hf_model(ds.hf_config("lite", vocab_size=100), seed=7), "lite")
    tests = os.path.join(ROOT, "tests")
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join([ROOT, tests, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _DISTRIBUTED, directory], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]

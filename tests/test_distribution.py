"""Scaling out with keras.distribution: layout maps of both families, and multi-device runs equal to
one device.

In this process (every backend): `get_layout_map` covers every variable of every task class and
architecture variant (quantized and LoRA variables too) with divisible splits on an 8-way model
axis, and bad meshes fail with errors naming the variable and the sizes. A mesh needs no real
devices for that: layout maps are looked up by path.

In a subprocess (tests/distributed_worker.py; devices must be configured before the backend
starts): JAX on 8 simulated CPU devices (DataParallel(8), ModelParallel 1x8 and 2x4: forward,
one fit step, greedy generate, loading into shards, experts split, the latent cache split along
the batch); TensorFlow under MirroredStrategy over 2 logical CPUs; PyTorch with DDP (gloo, 2
processes). Each compares with the same model on one device.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import deepseek_reference
import hf_reference
from distributed_configs import DEBERTA_V2, DEEPSEEK
from keras_deberta import (
    DebertaConfig, DebertaV2Config, TFDebertaForMaskedLM, TFDebertaForMultipleChoice, TFDebertaForQuestionAnswering,
    TFDebertaForSequenceClassification, TFDebertaForTokenClassification, TFDebertaModel, TFDebertaV2ForMaskedLM,
    TFDebertaV2ForMultipleChoice, TFDebertaV2ForQuestionAnswering, TFDebertaV2ForSequenceClassification,
    TFDebertaV2ForTokenClassification, TFDebertaV2Model,
)
from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM, TFDeepseekV2ForSequenceClassification, \
    TFDeepseekV2Model
from presets.layout import LayoutError, check_layout
from presets.placement import assign_from_host

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

V2_CLASSES = (TFDebertaV2Model, TFDebertaV2ForMaskedLM, TFDebertaV2ForSequenceClassification,
              TFDebertaV2ForTokenClassification, TFDebertaV2ForQuestionAnswering, TFDebertaV2ForMultipleChoice)
V1_CLASSES = (TFDebertaModel, TFDebertaForMaskedLM, TFDebertaForSequenceClassification,
              TFDebertaForTokenClassification, TFDebertaForQuestionAnswering, TFDebertaForMultipleChoice)
DEEPSEEK_CLASSES = (TFDeepseekV2Model, TFDeepseekV2ForCausalLM, TFDeepseekV2ForSequenceClassification)

# The parity-tested architecture variants, resized so heads and widths divide an 8-way axis.
_DEBERTA_SIZES = dict(vocab_size=99, hidden_size=64, num_attention_heads=8, intermediate_size=128,
                      max_position_embeddings=64, num_hidden_layers=1)  # every layer is alike
_DEEPSEEK_SIZES = {k: DEEPSEEK[k] for k in ("hidden_size", "intermediate_size", "moe_intermediate_size",
                                             "num_attention_heads", "n_routed_experts", "vocab_size")}


def _v2(variant, **extra):
    return DebertaV2Config(**{**hf_reference.TINY_V2, **hf_reference.V2_VARIANTS[variant], **_DEBERTA_SIZES,
                              "attention_head_size": 8, **extra})


def _v1(variant):
    return DebertaConfig(**{**hf_reference.TINY_V1, **hf_reference.V1_VARIANTS[variant], **_DEBERTA_SIZES})


def _deepseek(variant):
    return DeepseekV2Config(**{**deepseek_reference.VARIANTS[variant], **_DEEPSEEK_SIZES})


CASES = (  # (id, class, config)
    [(f"{cls.__name__}-v3_like", cls, _v2("v3_like")) for cls in V2_CLASSES]
    + [("TFDebertaV2ForMaskedLM-lm_predictions", TFDebertaV2ForMaskedLM, _v2("v3_like", legacy=False))]
    + [(f"TFDebertaV2ForSequenceClassification-{v}", TFDebertaV2ForSequenceClassification, _v2(v))
       for v in hf_reference.V2_VARIANTS if v != "v3_like"]
    + [(f"{cls.__name__}-relative_whole_length", cls, _v1("relative_whole_length")) for cls in V1_CLASSES]
    + [(f"TFDebertaForSequenceClassification-{v}", TFDebertaForSequenceClassification, _v1(v))
       for v in hf_reference.V1_VARIANTS if v != "relative_whole_length"]
    + [(f"{cls.__name__}-{v}", cls, _deepseek(v)) for cls in DEEPSEEK_CLASSES for v in deepseek_reference.VARIANTS]
)


def _mesh(shape=(1, 8), names=("batch", "model")):
    # Layout maps are looked up by path: device names are never resolved here.
    return keras.distribution.DeviceMesh(shape, names, devices=[f"cpu:{i}" for i in range(int(np.prod(shape)))])


def _built(cls, config):
    return cls(config).build_with_dummy_inputs()


def _check(model, layout_map):
    check_layout(model, layout_map, rules=model.layout_rules, count_values=model.layout_counts(model.config))


@pytest.mark.parametrize("cls,config", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layout_map_covers_every_variable_with_divisible_splits(cls, config):
    model = _built(cls, config)
    _check(model, cls.get_layout_map(_mesh()))


@pytest.mark.parametrize("cls,config", [(TFDebertaV2ForMaskedLM, _v2("v3_like")),
                                        (TFDeepseekV2ForCausalLM, _deepseek("v2"))], ids=["deberta", "deepseek"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_layout_map_covers_quantized_variables(cls, config, mode):
    model = _built(cls, config)
    model.quantize(mode)
    assert any(v.path.endswith("_scale") for v in model.variables)
    _check(model, cls.get_layout_map(_mesh()))


@pytest.mark.parametrize("cls,config", [(TFDebertaForSequenceClassification, _v1("talking_heads")),
                                        (TFDebertaV2ForSequenceClassification, _v2("separate_both_buckets")),
                                        (TFDeepseekV2ForCausalLM, _deepseek("lite"))], ids=["v1", "v2", "deepseek"])
def test_layout_map_covers_lora_adapters(cls, config):
    model = _built(cls, config)
    model.enable_lora(4)
    assert any("lora_kernel" in v.path for v in model.variables)
    _check(model, cls.get_layout_map(_mesh()))


def test_an_unmatched_variable_fails_the_coverage_check():
    model = _built(TFDeepseekV2ForCausalLM, _deepseek("v2"))
    layout_map = TFDeepseekV2ForCausalLM.get_layout_map(_mesh())
    for key in [k for k in layout_map if k.endswith("lm_head/kernel")]:
        del layout_map[key]
    with pytest.raises(LayoutError, match=r"1 variables match no layout-map entry: \S+/lm_head/kernel \(64, 128\)"):
        _check(model, layout_map)


def test_roles_map_to_the_callers_axis_names():
    mesh = _mesh((2, 4), ("data", "tensor"))
    layout_map = TFDeepseekV2ForCausalLM.get_layout_map(mesh, model_parallel_dim_name="tensor",
                                                        data_parallel_dim_name="data", expert_parallel_dim_name="data")
    path = "tf_deepseek_v2_for_causal_lm/model/layers_3/{}"
    assert layout_map[path.format("self_attn/q_b_proj/kernel")].axes == (None, "tensor")
    assert layout_map[path.format("self_attn/o_proj/kernel")].axes == ("tensor", None)
    assert layout_map[path.format("self_attn/kv_a_proj_with_mqa/kernel")].axes == (None, None)
    assert layout_map[path.format("mlp/experts/down_kernel")].axes == ("data", None, None)
    assert layout_map[path.format("mlp/gate/kernel")].axes == (None, None)
    assert layout_map["tf_deepseek_v2_for_causal_lm/model/embed_tokens/output"].axes == ("data", None, None)
    # Default: experts on the model axis; a mesh without the batch axis leaves the batch unsplit.
    layout_map = TFDeepseekV2ForCausalLM.get_layout_map(_mesh((8,), ("model",)))
    assert layout_map[path.format("mlp/experts/up_kernel")].axes == ("model", None, None)
    assert layout_map["m/model/embed_tokens/output"].axes == (None, None, None)


def test_a_mesh_without_the_model_axis_is_refused():
    with pytest.raises(LayoutError, match=r"the model axis 'model' is not an axis of the device mesh \{'batch': 2, 'x': 4\}"):
        TFDebertaV2Model.get_layout_map(_mesh((2, 4), ("batch", "x")))


def test_splits_that_do_not_divide_name_the_variable_and_sizes():
    lite = DeepseekV2Config(**deepseek_reference.LITE)  # 4 heads, 6 routed experts
    model = _built(TFDeepseekV2ForCausalLM, lite)
    with pytest.raises(LayoutError) as error:
        _check(model, TFDeepseekV2ForCausalLM.get_layout_map(_mesh()))
    message = str(error.value)
    assert "layers_1/mlp/experts/gate_kernel (6, 32, 16): mesh axis 'model' has 8 devices, which does not divide " \
           "dimension 0 of size 6" in message
    assert "layers_0/self_attn/q_proj/kernel (32, 48): mesh axis 'model' has 8 devices, which does not divide " \
           "the 4 attention heads along dimension 1" in message
    assert "mlp/experts" in message and "o_proj/kernel (24, 32)" in message


def test_assign_from_host_on_one_device_is_assign():
    variable = keras.Variable(np.zeros((3, 4), "float32"))
    value = np.arange(12, dtype="float32").reshape(3, 4)
    assign_from_host(variable, value)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


# --- multi-device runs in a subprocess -----------------------------------------------------------------
_JAX_CHECKS = [f"{family}/{name}" for family in ("deepseek", "deberta")
               for name in ("data_parallel_8", "model_parallel_1x8", "model_parallel_2x4")] + [
    "deberta_v1/model_parallel_2x4_forward", "deepseek/experts_split_and_loaded_in_shards",
    "deepseek/latent_cache_split_along_batch",
    "bad_mesh_names_the_variable"]
CHECKS = {
    "jax": _JAX_CHECKS,
    "tensorflow": ["deberta/mirrored_strategy_2", "deepseek/mirrored_strategy_2"],
    "torch": ["deberta/torch_ddp_2", "deepseek/torch_ddp_2"],
}


@pytest.fixture(scope="module")
def worker_report(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("distributed") / "report.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distributed_worker.py"), BACKEND, out],
                         env=env, capture_output=True, text=True, timeout=900)
    if not os.path.exists(out):
        pytest.fail(f"the distributed worker wrote no report (exit {run.returncode}):\n{run.stderr[-4000:]}")
    with open(out) as f:
        report = json.load(f)
    if run.returncode != 0:
        report["_exit"] = {"ok": False, "detail": f"exit {run.returncode}: {run.stderr[-4000:]}"}
    return report


@pytest.mark.parametrize("name", CHECKS[BACKEND])
def test_multi_device_run_equals_one_device(worker_report, name):
    assert "_exit" not in worker_report, worker_report["_exit"]["detail"]
    assert name in worker_report, f"the worker did not run {name}: {sorted(worker_report)}"
    result = worker_report[name]
    print(f"{name}: {result.get('detail')}")  # figures, e.g. per-device parameter bytes (pytest -s)
    assert result["ok"], result["detail"] + "\n" + result.get("traceback", "")

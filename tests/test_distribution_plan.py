"""`plan_distribution` against what Keras and XLA really do.

In this process (every backend): the abstract model (no values) has exactly the variables of the
real one, quantized ones included (Keras' own int8 / int4 layouts); bad meshes are ValueErrors
naming the axis; DeepSeek-V2 236B plans in seconds without allocating its weights; the CLI prints
the table.

In a subprocess (this file run as a script, on the machinery of tests/distributed_worker.py: JAX on
8 simulated CPU devices): a tiny DeepSeek built under meshes 2x4 and 8x1 (and 1x8, experts on the
batch axis too) holds on every device exactly the parameter bytes the plan gives (float, int8,
int4), and its compiled forward's collectives (operand bytes per layer and kind, parsed from the
HLO) are within 10% of the plan's. The forward compiles the accelerator program (routed experts
through `jax.lax.ragged_dot`, as `layers/kernel_choice.py` picks off CPU), which the plan models;
on CPU the chunk loop's collectives sit inside a loop with a data-dependent trip count.
"""

import io
import json
import os
import re
import subprocess
import sys

if __name__ == "__main__":  # the worker: its import configures 8 simulated JAX devices before Keras loads
    import distributed_worker  # noqa: F401

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()

# Heads, experts and widths divide 8; a dense first layer and two MoE layers with a shared expert.
TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=64, moe_intermediate_size=16, num_attention_heads=8,
            kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, max_position_embeddings=64,
            num_hidden_layers=3, q_lora_rank=24, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
            first_k_dense_replace=1, topk_method="greedy", pad_token_id=0, bos_token_id=1, eos_token_id=2,
            tie_word_embeddings=False)
BATCH, SEQ = 8, 16
# (mesh, expert axis) compiled in the worker; None: the model axis.
MESHES = (((2, 4), None), ((8, 1), None), ((8, 1), "batch"), ((1, 8), None))


def _variables(model):
    # Paths below the model's own auto-numbered name.
    return sorted((v.path.split("/", 1)[1], tuple(v.shape), str(v.dtype)) for v in model.variables)


# --- in this process ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [dict(), dict(q_lora_rank=None)], ids=["q_lora", "q_proj"])
@pytest.mark.parametrize("quantize", [None, "int8", "int4"])
def test_abstract_model_has_the_real_models_variables(variant, quantize):
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM
    from keras_deepseek.distribution_plan import abstract_model

    config = DeepseekV2Config(**{**TINY, **variant})
    real = TFDeepseekV2ForCausalLM(config, dtype="bfloat16")
    count = sum(int(np.prod(v.shape)) for v in real.variables)
    if quantize:
        real.quantize(quantize)
    abstract, abstract_count = abstract_model(config, dtype="bfloat16", quantize=quantize)
    assert _variables(abstract) == _variables(real)
    assert abstract_count == count


def test_deepseek_v2_plans_without_allocating_its_weights():
    import resource

    from keras.src.backend.common import global_state

    from keras_deepseek import plan_distribution

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = plan_distribution("deepseek-ai/DeepSeek-V2", "1x8", dtype="bfloat16")
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # Linux: KiB
    assert 235e9 < plan.parameter_count < 237e9  # the paper's 236B
    assert grown < 2**30, f"the plan grew the process by {grown / 2**30:.1f} GiB"
    # Nothing is left for a later StatelessScope to initialise.
    assert not global_state.get_global_attribute("uninitialized_variables")
    # 60 layers: the first dense, 59 MoE; tensor-parallel all-reduces in each.
    assert [layer.kind for layer in plan.communication] == ["input", "dense"] + ["moe"] * 59
    table = str(plan)
    assert "1-59 moe (each)" in table and "parameters" in table and "latent cache" in table
    # Latent cache: 60 layers x 4096 tokens x 576 values x 2 bytes, replicated on the model axis.
    assert plan.kv_cache_bytes == 60 * 4096 * 576 * 2
    int8 = plan_distribution("deepseek-ai/DeepSeek-V2", "1x8", dtype="bfloat16", quantize="int8")
    assert 0.5 < int8.parameter_bytes / plan.parameter_bytes < 0.51  # one byte a value, plus scales
    assert int8.communication is None and "not modelled" in str(int8)


@pytest.mark.parametrize("kwargs,message", [
    (dict(mesh_shape=(1, 8), config=dict(TINY, n_routed_experts=6, num_experts_per_tok=2)),
     r"the expert axis 'model' has 8 devices, which does not divide n_routed_experts = 6"),
    (dict(mesh_shape=(4, 2), expert_axis="batch", config=dict(TINY, n_routed_experts=6)),
     r"the expert axis 'batch' has 4 devices, which does not divide n_routed_experts = 6"),
    (dict(mesh_shape=(1, 16), config=dict(TINY, n_routed_experts=16)), r"the model axis 'model' has 16 devices, which does not divide num_attention_heads = 8"),
    (dict(mesh_shape=(2, 4), batch=3), r"the data axis 'batch' has 2 devices, which does not divide the batch 3"),
    (dict(mesh_shape=(2, 4), expert_axis="experts"), r"the expert axis 'experts' is not an axis of the mesh"),
    (dict(mesh_shape="2by4"), r"joined by 'x'"),
    (dict(mesh_shape=(2, 0)), r"positive device counts"),
    (dict(mesh_shape=(8,)), r"must name each of the 1 mesh axes once"),
    (dict(mesh_shape=(1, 8), quantize="fp8"), r"quantize must be None, 'int8' or 'int4'"),
])
def test_bad_meshes_are_value_errors_naming_the_axis(kwargs, message):
    from keras_deepseek import plan_distribution

    kwargs = {"config": TINY, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_distribution(kwargs.pop("config"), kwargs.pop("mesh_shape"), **kwargs)


def test_plan_command_prints_the_table(tmp_path):
    from keras_deepseek.cli import main

    out = io.StringIO()
    assert main(["plan", "deepseek-ai/DeepSeek-V2-Lite", "--mesh", "1x4", "--seq-len", "1024"], stdout=out) == 0
    text = out.getvalue()
    assert "deepseek-ai/DeepSeek-V2-Lite: 15.71B parameters, bfloat16" in text
    assert "1 'batch' x 4 'model'" in text and "1-26 moe (each)" in text
    # A config.json path, another axis for the experts, int8.
    from keras_deepseek import DeepseekV2Config

    DeepseekV2Config(**TINY).save_pretrained(str(tmp_path))
    out = io.StringIO()
    assert main(["plan", str(tmp_path / "config.json"), "--mesh", "4x2", "--expert-axis", "batch", "--batch", "4",
                 "--quantize", "int8", "--dtype", "float32"], stdout=out) == 0
    assert "experts on 'batch'" in out.getvalue() and "int8" in out.getvalue()


def test_plan_command_refuses_a_mesh_that_does_not_divide_the_experts(capsys):
    from keras_deepseek.cli import main

    assert main(["plan", "deepseek-ai/DeepSeek-V2-Lite", "--mesh", "1x3"], stdout=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "keras_deepseek plan: error: the expert axis 'model' has 3 devices, which does not divide " \
           "n_routed_experts = 64" in err


# --- the worker: 8 simulated JAX devices -------------------------------------------------------------
_KINDS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
             "s64": 8, "u64": 8, "f64": 8}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.+?)\s+([\w\-]+)\((.*)$")


def _shape_bytes(text):
    return sum(_ITEMSIZE[t] * int(np.prod([int(x) for x in dims.split(",") if x] or [1]))
               for t, dims in re.findall(r"\b(pred|[a-z]+\d+)\[([\d,]*)\]", text))


def hlo_collectives(hlo_text):
    """{part: {kind: operand bytes}} of the collectives in compiled HLO text; part is "layers_i"
    from the op's source path, else "input". Operand shapes are read from the instructions that
    define them (compiled HLO names operands without their shapes)."""
    lines = hlo_text.splitlines()
    shapes = {m.group(1): m.group(2) for m in map(_INSTRUCTION.match, lines) if m}
    out = {}
    for m in map(_INSTRUCTION.match, lines):
        if not m or m.group(3).removesuffix("-start") not in _KINDS:
            continue  # (an async pair is counted at its -start; its -done is another op)
        kind = m.group(3).removesuffix("-start")
        operands = re.findall(r"%([\w.\-]+)", m.group(4).split(")")[0])
        layer = re.search(r'op_name="[^"]*/model/(layers_\d+)/', m.group(0))
        part = out.setdefault(layer.group(1) if layer else "input", {})
        part[kind] = part.get(kind, 0) + sum(_shape_bytes(shapes[o]) for o in operands)
    return out


def _per_device_bytes(model):
    import jax

    return {str(device): sum(s.data.nbytes for v in model.variables for s in v.value.addressable_shards
                             if s.device == device) for device in jax.devices()}


def run_worker():
    import jax

    from distributed_worker import REPORT, check
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM, plan_distribution
    from layers import kernel_choice

    kernel_choice.device_kind = lambda: "gpu"  # compile the accelerator program the plan models
    devices = keras.distribution.list_devices()
    config = DeepseekV2Config(**TINY)
    ids = np.random.RandomState(0).randint(3, TINY["vocab_size"], (BATCH, SEQ)).astype("int32")

    for shape, expert_axis in MESHES:
        name = f"{shape[0]}x{shape[1]}" + (f"_experts_on_{expert_axis}" if expert_axis else "")
        mesh = keras.distribution.DeviceMesh(shape, ("batch", "model"), devices)
        layout_map = TFDeepseekV2ForCausalLM.get_layout_map(mesh, expert_parallel_dim_name=expert_axis)
        distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")

        @check(f"communication/{name}")
        def _():
            plan = plan_distribution(config, shape, dtype="float32", batch=BATCH, seq_len=SEQ, expert_axis=expert_axis)
            with distribution.scope():
                model = TFDeepseekV2ForCausalLM(config)
                held = _per_device_bytes(model)
                values = [v.value for v in model.variables]
                batch = jax.device_put(ids, jax.sharding.NamedSharding(mesh.backend_mesh,
                                                                       jax.sharding.PartitionSpec("batch", None)))

                def forward(values, ids):
                    with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
                        return model(ids)["logits"]

                hlo = jax.jit(forward).lower(values, batch).compile().as_text()
            assert set(held.values()) == {plan.parameter_bytes}, (held, plan.parameter_bytes)
            compiled = hlo_collectives(hlo)
            planned = {layer.name: layer.bytes_by_kind() for layer in plan.communication}
            assert set(compiled) <= set(planned), sorted(set(compiled) - set(planned))
            worst, rows = 0.0, []
            for part, kinds in planned.items():
                got = compiled.get(part, {})
                assert set(got) == set(kinds), f"{part}: compiled {got}, planned {kinds}"
                for kind, want in kinds.items():
                    off = abs(got[kind] - want) / want
                    worst = max(worst, off)
                    rows.append(f"{part} {kind} {got[kind]} vs {want}")
                    assert off <= 0.10, f"{part} {kind}: compiled {got[kind]} bytes, planned {want} ({off:.1%} off)"
            return {"detail": f"parameters {plan.parameter_bytes:,} B per device (all 8 equal); collectives "
                              f"within {worst:.1%}: " + "; ".join(rows)}

        @check(f"quantized_parameters/{name}")
        def _():
            out = []
            for mode in ("int8", "int4"):
                plan = plan_distribution(config, shape, dtype="float32", quantize=mode, batch=BATCH, seq_len=SEQ,
                                         expert_axis=expert_axis)
                with distribution.scope():
                    model = TFDeepseekV2ForCausalLM(config)
                    model.quantize(mode)
                    held = _per_device_bytes(model)
                assert set(held.values()) == {plan.parameter_bytes}, (mode, held, plan.parameter_bytes)
                out.append(f"{mode} {plan.parameter_bytes:,} B")
            return {"detail": ", ".join(out) + " per device (all 8 equal)"}

    return REPORT


@pytest.fixture(scope="module")
def worker_report(tmp_path_factory):
    if BACKEND != "jax":
        pytest.skip("the compiled SPMD program is JAX's (keras.distribution)")
    out = str(tmp_path_factory.mktemp("plan") / "report.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, os.path.abspath(__file__), "jax", out], env=env, capture_output=True,
                         text=True, timeout=900)
    if not os.path.exists(out):
        pytest.fail(f"the plan worker wrote no report (exit {run.returncode}):\n{run.stderr[-4000:]}")
    with open(out) as f:
        return json.load(f)


def _mesh_name(shape, expert_axis):
    return f"{shape[0]}x{shape[1]}" + (f"_experts_on_{expert_axis}" if expert_axis else "")


@pytest.mark.parametrize("check", [f"{what}/{_mesh_name(*mesh)}" for mesh in MESHES
                                   for what in ("communication", "quantized_parameters")])
def test_plan_matches_the_compiled_program(worker_report, check):
    assert check in worker_report, f"the worker did not run {check}: {sorted(worker_report)}"
    result = worker_report[check]
    print(f"{check}: {result.get('detail')}")
    assert result["ok"], result["detail"] + "\n" + result.get("traceback", "")


if __name__ == "__main__":
    try:
        report = run_worker()
    finally:
        from distributed_worker import REPORT

        with open(sys.argv[2], "w") as f:
            json.dump(REPORT, f, indent=1)

"""Multi-device checks, run by tests/test_distribution.py in a subprocess.

JAX must see 8 simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8), and
TensorFlow several logical CPUs, before either initialises: hence a fresh process. One process runs
every check of its backend and writes a JSON report {check: {"ok": bool, "detail": str, ...}};
the pytest side asserts on each entry, so a failure names its check.

    python tests/distributed_worker.py jax REPORT.json
    python tests/distributed_worker.py tensorflow REPORT.json

Single-device results are the reference: the single-device models are themselves tested exact
against transformers.
"""

import json
import os
import sys
import tempfile
import time
import traceback

BACKEND = sys.argv[1]
os.environ["KERAS_BACKEND"] = BACKEND
if BACKEND == "jax":
    # 8 simulated devices; the lighter LLVM pipeline halves XLA's CPU compile time, which dominates
    # here (the single-device references compile with the same flags).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                               " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from distributed_configs import DEBERTA_V1, DEBERTA_V2, DEEPSEEK, batches  # noqa: E402

REPORT = {}
TOLERANCE = 1e-5  # relative, against the single-device result


def check(name):
    """Runs the decorated function now; records {"ok", "detail", "seconds", ...} under `name`."""
    def run(fn):
        start = time.perf_counter()
        try:
            result = fn() or {}
            REPORT[name] = {"ok": True, "seconds": round(time.perf_counter() - start, 1), **result}
        except Exception as error:  # recorded and reported by the pytest side
            REPORT[name] = {"ok": False, "detail": f"{type(error).__name__}: {error}",
                            "traceback": traceback.format_exc()[-4000:]}
        return fn
    return run


def relative_difference(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def weights_by_path(model):
    # Paths below the model's own (auto-numbered) name, which differs between instances.
    return {v.path.split("/", 1)[1]: np.asarray(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables}


def worst_weight_difference(got, want):
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))
    return max((relative_difference(got[k], want[k]), k) for k in want)


def one_fit_step(model, x, y):
    """Weights after one `fit` step on the model's own loss (SGD: the update is linear in the
    gradient, so the comparison sees gradient differences directly)."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
    model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    return weights_by_path(model)


# --- JAX: DataParallel and ModelParallel on 8 simulated devices ---------------------------------------
def run_jax():
    import jax

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM
    from presets.layout import LayoutError, check_layout

    devices = keras.distribution.list_devices()
    assert len(devices) == 8, devices

    def distributions(model_class):
        out = {"data_parallel_8": keras.distribution.DataParallel(devices=devices)}
        for shape in ((1, 8), (2, 4)):
            mesh = keras.distribution.DeviceMesh(shape, ("batch", "model"), devices)
            out[f"model_parallel_{shape[0]}x{shape[1]}"] = keras.distribution.ModelParallel(
                layout_map=model_class.get_layout_map(mesh), batch_dim_name="batch")
        return out

    work = tempfile.mkdtemp()
    ids, mask, labels = batches()

    # DeepSeek-V2: forward, one fit step, greedy generate; checkpoints loaded inside the distribution.
    config = DeepseekV2Config(**DEEPSEEK)
    keras.utils.set_random_seed(0)
    reference = TFDeepseekV2ForCausalLM(config)
    reference.build_with_dummy_inputs()
    deepseek_dir = os.path.join(work, "deepseek")
    reference.save_pretrained(deepseek_dir)
    x = {"input_ids": ids, "attention_mask": mask}
    want_logits = reference.predict(x, batch_size=8, verbose=0)["logits"]
    want_tokens = np.asarray(reference.generate(ids[:, :6], max_new_tokens=4))
    want_weights = one_fit_step(reference, x, ids)

    for name, distribution in distributions(TFDeepseekV2ForCausalLM).items():
        @check(f"deepseek/{name}")
        def _():
            with distribution.scope():
                model = TFDeepseekV2ForCausalLM.from_pretrained(deepseek_dir)
                logits = relative_difference(model.predict(x, batch_size=8, verbose=0)["logits"], want_logits)
                tokens = np.asarray(model.generate(ids[:, :6], max_new_tokens=4))
                weights, where = worst_weight_difference(one_fit_step(model, x, ids), want_weights)
            assert logits <= TOLERANCE, f"logits differ by {logits:.2e} (relative)"
            assert np.array_equal(tokens, want_tokens), f"greedy tokens differ:\n{tokens}\n{want_tokens}"
            assert weights <= TOLERANCE, f"updated weight {where} differs by {weights:.2e} (relative)"
            return {"detail": f"logits {logits:.1e}, weights {weights:.1e}, generate equal"}

    # DeBERTa-v2 classifier (relative attention, nGiE conv, dropout on in training).
    config = DebertaV2Config(**DEBERTA_V2)
    keras.utils.set_random_seed(0)
    reference = TFDebertaV2ForSequenceClassification(config)
    deberta_dir = os.path.join(work, "deberta")
    reference.save_pretrained(deberta_dir)
    want_logits = reference.predict(x, batch_size=8, verbose=0)["logits"]
    keras.utils.set_random_seed(1)
    want_weights = one_fit_step(reference, x, labels)

    for name, distribution in distributions(TFDebertaV2ForSequenceClassification).items():
        @check(f"deberta/{name}")
        def _():
            keras.utils.set_random_seed(0)  # the dropout layers' seeds, as the reference's
            with distribution.scope():
                model = TFDebertaV2ForSequenceClassification.from_pretrained(deberta_dir)
                logits = relative_difference(model.predict(x, batch_size=8, verbose=0)["logits"], want_logits)
                keras.utils.set_random_seed(1)
                weights, where = worst_weight_difference(one_fit_step(model, x, labels), want_weights)
            assert logits <= TOLERANCE, f"logits differ by {logits:.2e} (relative)"
            assert weights <= TOLERANCE, f"updated weight {where} differs by {weights:.2e} (relative)"
            return {"detail": f"logits {logits:.1e}, weights {weights:.1e}"}

    @check("deberta_v1/model_parallel_2x4_forward")
    def _():
        """v1's fused in_proj (+ q_bias, v_bias) and talking heads split by the same map."""
        from keras_deberta import DebertaConfig, TFDebertaForSequenceClassification

        config = DebertaConfig(**DEBERTA_V1)
        keras.utils.set_random_seed(0)
        single = TFDebertaForSequenceClassification(config)
        single.save_pretrained(os.path.join(work, "deberta_v1"))
        want = single.predict(x, batch_size=8, verbose=0)["logits"]
        mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
        layout_map = TFDebertaForSequenceClassification.get_layout_map(mesh)
        with keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch").scope():
            model = TFDebertaForSequenceClassification.from_pretrained(os.path.join(work, "deberta_v1"))
            logits = relative_difference(model.predict(x, batch_size=8, verbose=0)["logits"], want)
            shard = model.deberta.encoder_layers[0].attention.in_proj.kernel.value.addressable_shards[0].data.shape
        assert shard == (64, 48), shard
        assert logits <= TOLERANCE, f"logits differ by {logits:.2e} (relative)"
        return {"detail": f"logits {logits:.1e}; in_proj (64, 192) holds (64, 48) per device"}

    mesh_1x8 = keras.distribution.DeviceMesh((1, 8), ("batch", "model"), devices)
    layout_1x8 = TFDeepseekV2ForCausalLM.get_layout_map(mesh_1x8)
    config_deepseek = DeepseekV2Config(**DEEPSEEK)

    @check("deepseek/experts_split_and_loaded_in_shards")
    def _():
        """Experts really split; loading hands every split variable per-device slices."""
        assigned = []
        original_assign = keras.Variable.assign

        def recording_assign(variable, value):
            assigned.append((variable, value))
            return original_assign(variable, value)

        keras.Variable.assign = recording_assign
        try:
            with keras.distribution.ModelParallel(layout_map=layout_1x8, batch_dim_name="batch").scope():
                model = TFDeepseekV2ForCausalLM.from_pretrained(deepseek_dir)
        finally:
            keras.Variable.assign = original_assign
        check_layout(model, layout_1x8)
        split = {id(v) for v in model.variables if not v.value.sharding.is_fully_replicated}
        assert split, "nothing is split"
        unsharded = [v.path for v, value in assigned if id(v) in split and not (
            isinstance(value, jax.Array) and value.sharding.is_equivalent_to(v.value.sharding, len(v.shape)))]
        assert not unsharded, f"loaded through a whole-tensor copy on one device: {unsharded[:5]}"
        experts = model.model.decoder_layers[-1].mlp.experts
        E = config_deepseek.n_routed_experts
        for kernel in (experts.gate_kernel, experts.up_kernel, experts.down_kernel):
            shards = kernel.value.addressable_shards
            rows = sorted((s.index[0].start, s.index[0].stop) for s in shards)
            assert len(shards) == 8 and all(s.data.shape[0] == E // 8 for s in shards), kernel.path
            assert rows == [(i * E // 8, (i + 1) * E // 8) for i in range(8)], rows
        total = sum(v.value.nbytes for v in model.variables)
        replicated = sum(v.value.nbytes for v in model.variables if v.value.sharding.is_fully_replicated)
        device0 = jax.devices()[0]
        per_device = sum(s.data.nbytes for v in model.variables for s in v.value.addressable_shards
                         if s.device == device0)
        assert per_device <= total / 8 + replicated, (per_device, total, replicated)
        return {"detail": f"parameter bytes on one device {per_device:,} <= total {total:,} / 8 + replicated "
                          f"{replicated:,} = {total / 8 + replicated:,.0f}",
                "per_device_bytes": per_device, "total_bytes": total, "replicated_bytes": replicated}


    @check("deepseek/latent_cache_split_along_batch")
    def _():
        mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
        layout_map = TFDeepseekV2ForCausalLM.get_layout_map(mesh)
        with keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch").scope():
            model = TFDeepseekV2ForCausalLM.from_pretrained(deepseek_dir)
            width = config_deepseek.cache_values_per_token
            caches = [keras.ops.zeros((8, 16, width)) for _ in range(config_deepseek.num_hidden_layers)]

            @jax.jit
            def prefill(values, ids, caches):
                with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
                    return model.model(ids, caches=caches, cache_index=0,
                                       key_valid=keras.ops.ones((8, 16), "int32"))["caches"]

            out = prefill([v.value for v in model.variables], ids[:, :6], caches)
        shapes = {tuple(s.data.shape) for c in out for s in c.addressable_shards}
        assert shapes == {(4, 16, width)}, f"per-device cache shards {shapes}, expected (4, 16, {width})"
        return {"detail": f"per-device cache shard {shapes.pop()} of (8, 16, {width})"}

    @check("bad_mesh_names_the_variable")
    def _():
        from deepseek_reference import LITE  # 4 heads, 6 routed experts

        messages = []
        with keras.distribution.ModelParallel(layout_map=layout_1x8, batch_dim_name="batch").scope():
            try:
                TFDeepseekV2ForCausalLM(DeepseekV2Config(**LITE)).build_with_dummy_inputs()
                raise AssertionError("6 experts on an 8-device model axis built")
            except LayoutError as error:
                messages.append(str(error))
        layout = TFDebertaV2ForSequenceClassification.get_layout_map(mesh_1x8)
        with keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch").scope():
            try:  # 4 heads of 8: every width divides by 8, the heads do not
                TFDebertaV2ForSequenceClassification(DebertaV2Config(**{**DEBERTA_V2, "num_attention_heads": 4,
                                                                       "attention_head_size": 16}))
                raise AssertionError("4 heads on an 8-device model axis built")
            except LayoutError as error:
                messages.append(str(error))
        assert "experts/gate_kernel (6, 32, 16)" in messages[0] and "size 6" in messages[0], messages[0]
        assert "query_proj/kernel (64, 64)" in messages[1] and "4 attention heads" in messages[1], messages[1]
        return {"detail": " | ".join(m[:300] for m in messages)}


# --- TensorFlow: tf.distribute.MirroredStrategy over 2 logical CPUs ---------------------------------
def _no_dropout(config):
    # Replicas draw their own dropout masks: the comparison with one device needs none.
    return {**config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "attention_dropout": 0.0}


def run_tensorflow():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

    ids, mask, labels = batches()
    x = {"input_ids": ids, "attention_mask": mask}
    cases = {
        "deberta": (lambda: TFDebertaV2ForSequenceClassification(DebertaV2Config(**_no_dropout(DEBERTA_V2))), labels),
        "deepseek": (lambda: TFDeepseekV2ForCausalLM(DeepseekV2Config(**_no_dropout(DEEPSEEK))), ids),
    }
    for name, (make, y) in cases.items():
        @check(f"{name}/mirrored_strategy_2")
        def _():
            # Batches of a fixed size, so every replica traces the same static shapes.
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(y), drop_remainder=True)

            def fit_step():
                keras.utils.set_random_seed(0)
                model = make().build_with_dummy_inputs()
                model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
                model.fit(dataset, epochs=1, verbose=0)
                return weights_by_path(model)

            want = fit_step()
            # The default all-reduce on CPU fails on DeepSeek's sparse (IndexedSlices) expert gradients
            # (replicas disagree on a packed collective's shape); reducing on one device works.
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                                      cross_device_ops=tf.distribute.ReductionToOneDevice())
            with strategy.scope():
                got = fit_step()
            weights, where = worst_weight_difference(got, want)
            assert weights <= TOLERANCE, f"updated weight {where} differs by {weights:.2e} (relative)"
            return {"detail": f"weights {weights:.1e}"}


# --- PyTorch: torch DDP (gloo) around the Keras model, 2 processes ------------------------------------
def _ddp_process(rank, world, port, out_dir):
    import torch

    from torch_ddp_finetune import ddp_train, init_process_group

    init_process_group(rank, world, port)
    torch.set_num_threads(1)
    for name, (make, batch) in _torch_cases().items():
        model = make()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        ddp_train(model, optimizer, [batch], rank, world)
        if rank == 0:
            np.savez(os.path.join(out_dir, name + ".npz"), **weights_by_path(model))
    torch.distributed.destroy_process_group()


def _torch_cases():
    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

    ids, mask, labels = batches()

    def seeded(make):
        def build():
            keras.utils.set_random_seed(0)
            return make()
        return build

    return {
        "deberta": (seeded(lambda: TFDebertaV2ForSequenceClassification(DebertaV2Config(**_no_dropout(DEBERTA_V2)))),
                    {"input_ids": ids, "attention_mask": mask, "labels": labels}),
        "deepseek": (seeded(lambda: TFDeepseekV2ForCausalLM(DeepseekV2Config(**_no_dropout(DEEPSEEK)))
                            .build_with_dummy_inputs()),
                     {"input_ids": ids, "attention_mask": mask, "labels": ids}),
    }


def run_torch():
    import torch
    import torch.multiprocessing

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
    out_dir = tempfile.mkdtemp()
    port = 20000 + os.getpid() % 20000
    torch.multiprocessing.spawn(_ddp_process, args=(2, port, out_dir), nprocs=2)
    torch.set_num_threads(1)
    for name, (make, batch) in _torch_cases().items():
        @check(f"{name}/torch_ddp_2")
        def _():
            model = make()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
            optimizer.zero_grad()
            model(**{k: torch.as_tensor(v) for k, v in batch.items()}, training=True)["loss"].backward()
            optimizer.step()
            want = weights_by_path(model)
            got = dict(np.load(os.path.join(out_dir, name + ".npz")))
            weights, where = worst_weight_difference(got, want)
            assert weights <= TOLERANCE, f"updated weight {where} differs by {weights:.2e} (relative)"
            return {"detail": f"weights {weights:.1e}"}


def main():
    out_path = sys.argv[2]
    try:
        {"jax": run_jax, "tensorflow": run_tensorflow, "torch": run_torch}[BACKEND]()
    finally:
        with open(out_path, "w") as f:
            json.dump(REPORT, f, indent=1)


if __name__ == "__main__":
    main()

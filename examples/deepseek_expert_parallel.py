"""DeepSeek-V2 with its routed experts split over devices: load, generate, one LoRA training step.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 KERAS_BACKEND=jax \\
        python examples/deepseek_expert_parallel.py [--mesh 2x4] [--checkpoint DIR]

1. Writes a small random DeepSeek-V2 checkpoint (HF layout: config.json + model.safetensors, the
   routed experts stored one tensor per expert) with `save_pretrained`, unless --checkpoint names
   one (e.g. a converted DeepSeek-V2-Lite: then use a real device mesh).
2. Loads it under a 2 x 4 ("batch", "model") mesh with `get_layout_map`: the 16 routed experts of
   every MoE layer are split 4 ways over the "model" axis (4 experts per device), MLA heads and the
   shared experts are tensor-parallel, the router and the latent projections replicated. Loading
   hands each device only its slice of every split tensor.
3. Greedy `generate` for 4 prompts (the batch, and with it the latent cache, split over "batch"),
   compared with the same checkpoint on one device.
4. `enable_lora(4)` and one `fit` step on the adapters: the adapters are laid out like their layers.

The XLA flag simulates 8 devices on one CPU; on GPU / TPU hosts drop it (multi-host: call
`keras.distribution.initialize()` first, then the same code).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMALL = dict(vocab_size=1024, hidden_size=128, intermediate_size=384, moe_intermediate_size=64, num_attention_heads=8,
             kv_lora_rank=64, q_lora_rank=None, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
             num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=16, num_experts_per_tok=4,
             n_shared_experts=2, topk_method="greedy", max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
             eos_token_id=2, tie_word_embeddings=False, rope_theta=10000.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mesh", default="2x4", help="batch x model, e.g. 2x4 or 1x8")
    parser.add_argument("--expert-axis", default="model", help="the mesh axis that splits the routed experts")
    parser.add_argument("--checkpoint", help="an HF DeepSeek-V2 directory (default: write a small random one)")
    parser.add_argument("--new-tokens", type=int, default=8)
    args = parser.parse_args()

    import keras

    if keras.backend.backend() != "jax":
        sys.exit("keras.distribution runs on JAX: set KERAS_BACKEND=jax")
    from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

    devices = keras.distribution.list_devices()
    shape = tuple(int(n) for n in args.mesh.split("x"))
    if shape[0] * shape[1] != len(devices):
        sys.exit(f"--mesh {args.mesh} needs {shape[0] * shape[1]} devices, found {len(devices)} "
                 "(simulate them with XLA_FLAGS=--xla_force_host_platform_device_count=8)")

    checkpoint = args.checkpoint
    if checkpoint is None:  # 1. a checkpoint in the HF layout, written by this package
        checkpoint = tempfile.mkdtemp(prefix="deepseek-small-")
        keras.utils.set_random_seed(0)
        TFDeepseekV2ForCausalLM(DeepseekV2Config(**SMALL)).save_pretrained(checkpoint)
        print(f"wrote a random DeepSeek-V2 checkpoint to {checkpoint}")
    prompts = np.random.RandomState(0).randint(3, 1000, size=(4, 12)).astype("int32")

    single = TFDeepseekV2ForCausalLM.from_pretrained(checkpoint)  # the one-device reference
    want = np.asarray(single.generate(prompts, max_new_tokens=args.new_tokens))
    del single

    # 2. load under the mesh
    mesh = keras.distribution.DeviceMesh(shape, ("batch", "model"), devices)
    layout_map = TFDeepseekV2ForCausalLM.get_layout_map(mesh, expert_parallel_dim_name=args.expert_axis)
    distribution = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    with distribution.scope():
        model = TFDeepseekV2ForCausalLM.from_pretrained(checkpoint)
        experts = next(layer.mlp.experts for layer in model.model.decoder_layers if hasattr(layer.mlp, "experts"))
        kernel = experts.gate_kernel.value
        owned = sorted({(s.index[0].start, s.index[0].stop) for s in kernel.addressable_shards})
        print(f"mesh {dict(zip(mesh.axis_names, mesh.shape))}; routed experts {tuple(kernel.shape)} split "
              f"{kernel.sharding.spec}: each device holds {owned[0][1] - owned[0][0]} of the {kernel.shape[0]} "
              f"(slices {', '.join(f'{a}-{b - 1}' for a, b in owned)})")
        total = sum(v.value.nbytes for v in model.variables)
        device0 = kernel.addressable_shards[0].device
        local = sum(s.data.nbytes for v in model.variables for s in v.value.addressable_shards if s.device == device0)
        print(f"parameters: {total / 2**20:.1f} MiB in all, {local / 2**20:.1f} MiB on each device")

        # 3. greedy generation
        tokens = np.asarray(model.generate(prompts, max_new_tokens=args.new_tokens))
        print(f"generate: {tokens.shape[0]} prompts x {args.new_tokens} new tokens; equal to one device: "
              f"{np.array_equal(tokens, want)}")
        print("  first row:", tokens[0, prompts.shape[1]:].tolist())

        # 4. one LoRA step (adapters on MLA's projections; everything else frozen)
        adapted = model.enable_lora(4)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        batch = np.random.RandomState(1).randint(3, 1000, size=(8, 16)).astype("int32")
        before = {v.path: np.asarray(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables}
        history = model.fit({"input_ids": batch}, batch, batch_size=8, epochs=1, verbose=0)
        moved = [v.path for v in model.trainable_variables
                 if not np.array_equal(before[v.path], np.asarray(keras.ops.convert_to_numpy(v)))]
        b = next(v for v in model.trainable_variables if v.path.endswith("o_proj/lora_kernel_a"))
        print(f"LoRA: {len(adapted)} adapted layers, one fit step, loss {history.history['loss'][0]:.4f}; "
              f"{len(moved)} of {len(before)} trainable variables moved; o_proj's lora_kernel_a "
              f"{tuple(b.shape)} is split {b.value.sharding.spec} like o_proj's input")


if __name__ == "__main__":
    main()

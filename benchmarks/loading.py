"""Checkpoint loading at real sizes: peak memory, wall time and GB/s of transformers' `from_pretrained`
beside ours on each backend, every load in a fresh process, on the same sharded bf16 checkpoints.

    python benchmarks/loading.py --workdir /tmp --cases deepseek-1.35b --backends jax,torch,tensorflow

The checkpoints are written once by transformers (random init, bf16, 500MB shards) under
--workdir and reused. Each load runs in its own subprocess (`python -c`): wall time is the
`from_pretrained` call alone (imports excluded), peak RSS is the child's high-water mark (imports
included, so the framework's own footprint is in it; the peak after imports is printed beside it).
Both sides load in the checkpoint's dtype ("auto"). "+ read" is the peak after every weight has
been read once (transformers may keep parameters as views of the mapped file, which count only
once touched). The OS page cache is warm after the first
read: the first line of each case reads from disk, later lines from memory.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEEPSEEK = dict(vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
                num_attention_heads=16, num_key_value_heads=16, kv_lora_rank=512, q_lora_rank=None,
                qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=64, n_shared_experts=2,
                num_experts_per_tok=6, first_k_dense_replace=1, topk_method="greedy", n_group=1, topk_group=1,
                routed_scaling_factor=1.0, max_position_embeddings=4096, tie_word_embeddings=False)
CASES = {
    # DeepSeek-V2-Lite's shapes with 3 (or 6) layers.
    "deepseek-1.35b": ("deepseek_v2", dict(DEEPSEEK, num_hidden_layers=3)),
    "deepseek-3b": ("deepseek_v2", dict(DEEPSEEK, num_hidden_layers=6)),
    "deberta-v3-large": ("deberta-v2", dict(vocab_size=128100, hidden_size=1024, num_hidden_layers=24,
                                            num_attention_heads=16, intermediate_size=4096, max_position_embeddings=512,
                                            relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
                                            share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False,
                                            type_vocab_size=0, layer_norm_eps=1e-7)),
}
OURS = {"deepseek_v2": ("keras_deepseek", "TFDeepseekV2ForCausalLM"), "deberta-v2": ("keras_deberta", "TFDebertaV2Model")}
THEIRS = {"deepseek_v2": "DeepseekV2ForCausalLM", "deberta-v2": "DebertaV2Model"}

# Peak RSS is the child's VmHWM (its own high-water mark since exec); `ru_maxrss` would carry the
# forking parent's peak into the child.
_CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})

    def status(field):
        return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) * 1024

    {imports}
    rss_imports = status("VmHWM:")
    start = time.perf_counter()
    model = {load}
    wall = time.perf_counter() - start
    peak = status("VmHWM:")
    {touch}
    print(json.dumps({{"wall": wall, "peak": peak, "imports": rss_imports, "touched": status("VmHWM:")}}))
""")


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build(case, workdir):
    """The case's sharded bf16 checkpoint, written by transformers (once)."""
    directory = os.path.join(workdir, f"loading-{case}")
    if os.path.exists(os.path.join(directory, "model.safetensors.index.json")):
        return directory
    model_type, fields = CASES[case]
    code = textwrap.dedent(f"""
        import torch, transformers
        torch.manual_seed(0)
        config = transformers.AutoConfig.for_model({model_type!r}, **{fields!r})
        with torch.no_grad():
            model = getattr(transformers, {THEIRS[model_type]!r})._from_config(config, dtype=torch.bfloat16)
        model.save_pretrained({directory!r}, max_shard_size="500MB")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    return directory


def measure(directory, model_type, implementation, backend=None):
    if implementation == "transformers":
        imports = "import torch, transformers"
        load = f"transformers.{THEIRS[model_type]}.from_pretrained({directory!r}, dtype='auto')"
        # transformers may leave parameters as views of the mapped file, resident only once read.
        touch = "[p.sum() for p in model.parameters()]"
    else:
        module, cls = OURS[model_type]
        imports = f"from {module} import {cls}"
        load = f"{cls}.from_pretrained({directory!r}, dtype='auto')"
        touch = "import keras; [keras.ops.sum(v) for v in model.weights]"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if backend:
        env["KERAS_BACKEND"] = backend
    child = _CHILD.format(root=ROOT, imports=imports, load=load, touch=touch)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{implementation} {backend or ''} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def checkpoint_bytes(directory):
    return json.load(open(os.path.join(directory, "model.safetensors.index.json")))["metadata"]["total_size"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--cases", default="deepseek-1.35b", help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--backends", default="jax,torch,tensorflow")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores)")
    for case in args.cases.split(","):
        model_type = CASES[case][0]
        started = time.perf_counter()
        directory = build(case, args.workdir)
        size = checkpoint_bytes(directory)
        shards = sum(f.endswith(".safetensors") for f in os.listdir(directory))
        print(f"\n{case}: {size / 1e9:.2f} GB bf16 in {shards} shards "
              f"(built in {time.perf_counter() - started:.0f} s or reused)")
        print(f"{'loader':<24} {'peak RSS GB':>11} {'+ read GB':>10} {'imports GB':>10} {'wall s':>7} {'GB/s':>6} "
              f"{'RSS/HF':>7} {'wall/HF':>8}")
        runs = [("transformers", None)] + [("ours", b) for b in args.backends.split(",")]
        reference = None
        for implementation, backend in runs:
            result = measure(directory, model_type, implementation, backend)
            reference = reference or result
            name = implementation if backend is None else f"ours ({backend})"
            print(f"{name:<24} {result['peak'] / 1e9:>11.2f} {result['touched'] / 1e9:>10.2f} "
                  f"{result['imports'] / 1e9:>10.2f} "
                  f"{result['wall']:>7.1f} {size / 1e9 / result['wall']:>6.2f} "
                  f"{result['peak'] / reference['peak']:>7.2f} {result['wall'] / reference['wall']:>8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()

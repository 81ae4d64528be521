"""Data-parallel (or data x tensor parallel) fine-tuning of a DeBERTa-v3 classifier with `model.fit`.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 KERAS_BACKEND=jax \\
        python examples/distributed_finetune.py [--mesh 8 | --mesh 2x4] [--train-examples 4000]
    KERAS_BACKEND=tensorflow python examples/distributed_finetune.py --replicas 2

A small, randomly initialised DeBERTa-v3 (the real v3 attention: 256 log buckets, shared keys,
c2p + p2c) on SST-2 sentences tokenised with the real DeBERTa-v3 SentencePiece vocabulary.

JAX, keras.distribution: `--mesh 8` is `DataParallel` over 8 devices (weights replicated, each
batch split 8 ways, gradients all-reduced); `--mesh 2x4` is `ModelParallel` on a ("batch", "model")
mesh with the model's own `get_layout_map`: batches split in 2, each encoder block tensor-parallel
over 4 devices. The model is created inside the distribution's scope, so its variables are placed
as the layout says from the start. The XLA flag simulates 8 devices on one CPU (all share its
cores: this shows the program, not a speed-up); on a GPU or TPU host drop it.

TensorFlow: keras.distribution has no TensorFlow implementation in Keras 3.15, so `--replicas N`
uses `tf.distribute.MirroredStrategy` over N logical CPUs (or the GPUs). PyTorch: see
examples/torch_ddp_finetune.py (torch DDP).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from finetune_sst2 import SMALL_V3, SPM, encode, read_sst2  # noqa: E402  (one copy of the data code)


def jax_distribution(mesh_arg, model_class):
    """`--mesh 8` -> DataParallel(8 devices); `--mesh 2x4` -> ModelParallel on ("batch", "model")."""
    import keras

    devices = keras.distribution.list_devices()
    shape = tuple(int(n) for n in mesh_arg.split("x"))
    if int(np.prod(shape)) != len(devices):
        sys.exit(f"--mesh {mesh_arg} needs {int(np.prod(shape))} devices, found {len(devices)} "
                 "(simulate them with XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    if len(shape) == 1:
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh(shape, ("batch", "model"), devices)
    return keras.distribution.ModelParallel(layout_map=model_class.get_layout_map(mesh), batch_dim_name="batch")


def tf_strategy(replicas):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):  # (listing logical devices would initialise TF too early)
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    # On CPU, TF's default collective all-reduce fails on sparse (IndexedSlices) gradients of
    # several variables; reducing on one device works for every model of this project.
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mesh", default="8", help="JAX: '8' (data parallel) or '2x4' (batch x model)")
    parser.add_argument("--replicas", type=int, default=2, help="TensorFlow: MirroredStrategy replicas on CPU")
    parser.add_argument("--train-examples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="global; divisible by the data axis")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.path.exists(SPM):
        sys.exit(f"needs ../shared/data (SST-2 and the DeBERTa-v3 vocabulary); not found at {SPM}")

    import keras

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    backend = keras.backend.backend()
    if backend == "torch":
        sys.exit("PyTorch: run examples/torch_ddp_finetune.py (torch DDP around the Keras model)")
    if backend == "jax":
        scope = jax_distribution(args.mesh, TFDebertaV2ForSequenceClassification).scope()
        how = f"keras.distribution, mesh {args.mesh}"
    else:
        scope = tf_strategy(args.replicas).scope()
        how = f"tf.distribute.MirroredStrategy, {args.replicas} replicas"

    keras.utils.set_random_seed(args.seed)
    train_x, train_y = read_sst2("train.tsv", args.train_examples)
    dev_x, dev_y = read_sst2("dev.tsv")
    train, dev = encode(train_x, args.max_length), encode(dev_x, args.max_length)
    # Whole batches only: each is split evenly over the data axis.
    keep = len(train_y) // args.batch_size * args.batch_size
    train, train_y = {k: v[:keep] for k, v in train.items()}, train_y[:keep]
    keep_dev = len(dev_y) // args.batch_size * args.batch_size
    dev, dev_y = {k: v[:keep_dev] for k, v in dev.items()}, dev_y[:keep_dev]

    with scope:
        # 8 heads of 16 so a model axis of up to 8 devices holds whole heads.
        model = TFDebertaV2ForSequenceClassification(DebertaV2Config(**{**SMALL_V3, "num_attention_heads": 8}))
        steps = args.epochs * len(train_y) // args.batch_size
        schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=args.learning_rate,
                                                          warmup_steps=max(steps // 10, 1))
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01))
        print(f"{backend} ({how}): {model.count_params():,} parameters, {len(train_y)} training sentences, "
              f"{len(dev_y)} dev")
        if backend == "jax":
            for v in model.variables:
                if v.path.endswith(("word_embeddings/embeddings", "layer_0/self/query_proj/kernel",
                                    "layer_0/output/kernel")):
                    shard = v.value.addressable_shards[0].data.shape
                    print(f"  {v.path.split('/', 1)[1]} {tuple(v.shape)}: {v.value.sharding.spec}, "
                          f"{shard} per device")
        start = time.perf_counter()
        # Keras' progress bar while it trains (minutes on CPU)
        history = model.fit(train, train_y, batch_size=args.batch_size, epochs=args.epochs, verbose="auto")
        seconds = time.perf_counter() - start
        logits = np.asarray(model.predict(dev, batch_size=args.batch_size, verbose=0)["logits"])
    accuracy = float((logits.argmax(-1) == dev_y).mean())
    print(f"{steps} steps of global batch {args.batch_size}: train loss {history.history['loss'][-1]:.4f}, "
          f"dev accuracy {accuracy:.4f}, {seconds:.0f} s (compilation included)")


if __name__ == "__main__":
    main()

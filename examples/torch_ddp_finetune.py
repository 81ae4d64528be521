"""Data-parallel fine-tuning on the PyTorch backend: torch DistributedDataParallel around a Keras
model, the route Keras documents for torch (keras.io/guides/distributed_training_with_torch).

    KERAS_BACKEND=torch python examples/torch_ddp_finetune.py [--processes 2] [--steps 40]

keras.distribution has no PyTorch implementation, and `model.fit` does not drive DDP: a Keras model
on the torch backend is a `torch.nn.Module`, so each process wraps it in DDP (which broadcasts
rank 0's weights and averages gradients across processes in `backward`) and runs a plain torch
loop on its shard of every batch. Here: a small random-init DeBERTa-v3 classifier on SST-2
sentences with the real v3 vocabulary, on CPU with the gloo backend (GPUs: "nccl" and one process
per GPU, `device_ids=[rank]`). Each process prints its loss; rank 0 reports dev accuracy.
"""

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def shard(batch, rank, world):
    """This process's rows of a global batch (contiguous, equal-sized: rows % world == 0)."""
    return {k: v[rank * (len(v) // world):(rank + 1) * (len(v) // world)] for k, v in batch.items()}


def ddp_train(model, optimizer, batches, rank, world):
    """One optimizer step per global batch on this process's shard: DDP averages the gradients of
    the processes' mean losses, i.e. the gradient of the global batch's mean loss (equal shards).
    `batches` are dicts of numpy arrays including "labels". Returns this process's losses."""
    import torch

    ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    model.train()
    losses = []
    for batch in batches:
        local = {k: torch.as_tensor(v) for k, v in shard(batch, rank, world).items()}
        optimizer.zero_grad()
        loss = ddp_model(**local, training=True)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def init_process_group(rank, world, port):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _process(rank, world, args):
    import keras
    import torch
    import torch.distributed as dist

    from finetune_sst2 import SMALL_V3, encode, read_sst2
    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    init_process_group(rank, world, args.port)
    torch.set_num_threads(1)  # one core per process
    keras.utils.set_random_seed(args.seed)  # DDP broadcasts rank 0's weights anyway
    sentences, labels = read_sst2("train.tsv", args.steps * args.batch_size)
    data = {**encode(sentences, args.max_length), "labels": labels}
    batches = [{k: v[i:i + args.batch_size] for k, v in data.items()}
               for i in range(0, len(labels) - args.batch_size + 1, args.batch_size)]
    config = DebertaV2Config(**{**SMALL_V3, "num_hidden_layers": 2})
    model = TFDebertaV2ForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    losses = ddp_train(model, optimizer, batches, rank, world)
    print(f"rank {rank}: loss of its shard, first step {losses[0]:.4f}, mean of the last 10 "
          f"{np.mean(losses[-10:]):.4f}", flush=True)
    if rank == 0:
        dev_x, dev_y = read_sst2("dev.tsv")
        model.eval()
        with torch.no_grad():
            logits = keras.ops.convert_to_numpy(model.predict(encode(dev_x, args.max_length), batch_size=128,
                                                              verbose=0)["logits"])
        print(f"dev accuracy after {len(batches)} steps of global batch {args.batch_size}: "
              f"{(logits.argmax(-1) == dev_y).mean():.4f}", flush=True)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32, help="global; divisible by --processes")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=29512)
    args = parser.parse_args()
    if os.environ["KERAS_BACKEND"] != "torch":
        sys.exit("this example is for KERAS_BACKEND=torch (JAX: examples/distributed_finetune.py)")
    if args.batch_size % args.processes:
        sys.exit("--batch-size must be divisible by --processes")
    import torch.multiprocessing

    torch.multiprocessing.spawn(_process, args=(args.processes, args), nprocs=args.processes)


if __name__ == "__main__":
    main()

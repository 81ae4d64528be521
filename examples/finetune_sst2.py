"""Train a small, randomly initialised DeBERTa-v3 classifier on GLUE SST-2 with `model.fit`.

    KERAS_BACKEND=jax python examples/finetune_sst2.py [--train-examples 20000] [--epochs 2]

Sentences are tokenised with the real DeBERTa-v3 SentencePiece vocabulary from
../shared/data/vocab/deberta-v3 ([CLS] text [SEP], ids of the SentencePiece model itself). The
model trains on its own loss (`compile(optimizer=...)` with no loss, as transformers' TF models
did) and reports dev accuracy and seconds per epoch.
"""

import argparse
import csv
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")
SST2 = os.path.join(DATA, "sentiment", "SST-2")
SPM = os.path.join(DATA, "vocab", "deberta-v3", "spm.model")

# A small DeBERTa-v3 (the real v3 attention: 256 log buckets, shared keys, c2p + p2c).
SMALL_V3 = dict(
    vocab_size=128100, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
    max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
    share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0,
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=2,
)


def read_sst2(name, limit=None):
    with open(os.path.join(SST2, name), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:limit] if limit else rows
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows], dtype="int32")


def encode(sentences, max_length):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=SPM)
    ids = np.zeros((len(sentences), max_length), dtype="int32")  # [PAD] = 0
    for i, pieces in enumerate(sp.encode(sentences)):
        row = [1] + pieces[: max_length - 2] + [2]  # [CLS] ... [SEP]
        ids[i, : len(row)] = row
    return {"input_ids": ids, "attention_mask": (ids != 0).astype("int32")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-examples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.path.exists(SPM):
        sys.exit(f"needs ../shared/data (SST-2 and the DeBERTa-v3 vocabulary); not found at {DATA}")

    import keras

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    keras.utils.set_random_seed(args.seed)
    train_x, train_y = read_sst2("train.tsv", args.train_examples)
    dev_x, dev_y = read_sst2("dev.tsv")
    train, dev = encode(train_x, args.max_length), encode(dev_x, args.max_length)

    model = TFDebertaV2ForSequenceClassification(DebertaV2Config(**SMALL_V3))
    steps = args.epochs * -(-len(train_y) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=args.learning_rate,
                                                      warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01))
    print(f"backend {keras.backend.backend()}: {model.count_params():,} parameters, "
          f"{len(train_y)} training sentences, {len(dev_y)} dev")

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            logits = np.asarray(model.predict(dev, batch_size=128, verbose=0)["logits"])
            accuracy = float((logits.argmax(-1) == dev_y).mean())
            print(f"epoch {epoch + 1}: train loss {logs['loss']:.4f}  dev accuracy {accuracy:.4f}  "
                  f"{seconds:.1f} s/epoch")

    # Keras' progress bar during each epoch; EpochReport adds dev accuracy after it.
    model.fit(train, train_y, batch_size=args.batch_size, epochs=args.epochs, verbose="auto",
              callbacks=[EpochReport()])


if __name__ == "__main__":
    main()

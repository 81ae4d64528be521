"""Trains the embedded default sentiment classifier (keras_deberta/assets/sst2-tiny).

A small DeBERTa-v3-style TFDebertaV2ForSequenceClassification (relative attention with log
buckets, shared position projections, LayerNorm'd relative table, c2p + p2c, no absolute
positions), trained from scratch on GLUE SST-2 with a SentencePiece unigram vocabulary this script
trains on the same sentences. SST-2 is lower-cased, so the tokenizer lower-cases its input
(`do_lower_case`, which transformers' DebertaV2Tokenizer applies the same way). Everything is
seeded: a rerun on the same machine and backend gives the same vocabulary and, up to floating-point
reduction order, the same weights.

    python examples/train_default_classifier.py                                    # writes ./sst2-tiny-retrained
    python examples/train_default_classifier.py --output keras_deberta/assets/sst2-tiny   # replaces the shipped model

Needs ../shared/data/sentiment/SST-2/{train,dev}.tsv (or --data DIR) and the `sentencepiece` package.
"""

import argparse
import csv
import json
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")  # the fastest backend for training on a CPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, "..", "shared", "data", "sentiment", "SST-2")

# The recipe (printed, and stored in the asset's config.json under "training_recipe").
RECIPE = dict(vocab_pieces=8000, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
              intermediate_size=512, position_buckets=32, max_length=64, length_buckets=(16, 32, 64),
              batch_size=64, epochs=3, learning_rate=1e-3, warmup_fraction=0.06, weight_decay=0.01, seed=0)


def read_sst2(directory, name):
    """(sentences, labels) of a GLUE SST-2 tsv file (header `sentence<TAB>label`)."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise SystemExit(f"SST-2 not found: {path} is missing (pass --data DIR)")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows], dtype="int32")


def train_vocabulary(sentences, directory, pieces, seed):
    """A unigram SentencePiece model with DeBERTa's special pieces at DeBERTa's ids:
    [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 (the tokenizer appends [MASK] after the last piece)."""
    import sentencepiece as spm

    corpus = os.path.join(directory, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(sentences))
    prefix = os.path.join(directory, "spm")
    spm.set_random_generator_seed(seed)
    # One thread: the trainer's result must not depend on how work is split between threads.
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, model_type="unigram", vocab_size=pieces, character_coverage=1.0,
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3,
        unk_piece="[UNK]", byte_fallback=False, num_threads=1, minloglevel=2)
    return prefix + ".model"


def encode(tokenizer, texts, max_length):
    """Token id rows (with [CLS] ... [SEP]), truncated to max_length, unpadded."""
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def pad(rows, length, pad_id):
    ids = np.full((len(rows), length), pad_id, dtype="int32")
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return {"input_ids": ids, "attention_mask": (ids != pad_id).astype("int32")}


def length_bucketed_dataset(rows, labels, recipe, pad_id):
    """Batches of similar length, padded to the smallest bucket that holds them.

    SST-2 sentences are short (median 10 pieces), so padding every batch to max_length would
    spend most of the compute on padding; three fixed bucket lengths keep the number of compiled
    shapes at three. Batch order is reshuffled every epoch from the recipe's seed.
    """
    import keras

    buckets = recipe["length_buckets"]
    lengths = np.array([len(r) for r in rows])
    bucket_of = np.searchsorted(buckets, lengths)  # index of the smallest bucket >= length
    size = recipe["batch_size"]

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(recipe["seed"])
            self.on_epoch_end()

        def on_epoch_end(self):
            self.batches = []
            for b in range(len(buckets)):
                members = self.rng.permutation(np.flatnonzero(bucket_of == b))
                self.batches += [(b, members[i:i + size]) for i in range(0, len(members), size)]
            self.batches = [self.batches[i] for i in self.rng.permutation(len(self.batches))]

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            b, members = self.batches[index]
            return pad([rows[i] for i in members], buckets[b], pad_id), labels[members]

    return Batches()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Never the shipped model by default: replacing keras_deberta/assets/sst2-tiny changes what
    # pipeline("text-classification") and `make demo` use, so it takes an explicit --output.
    parser.add_argument("--output", default="sst2-tiny-retrained",
                        help="where to write the model (keras_deberta/assets/sst2-tiny replaces the shipped one)")
    parser.add_argument("--data", default=SST2, help="directory holding SST-2 train.tsv and dev.tsv")
    args = parser.parse_args(argv)

    import keras

    from keras_deberta import DebertaV2Config, DebertaV2Tokenizer, TFDebertaV2ForSequenceClassification

    r = RECIPE
    keras.utils.set_random_seed(r["seed"])
    train_texts, train_labels = read_sst2(args.data, "train.tsv")
    dev_texts, dev_labels = read_sst2(args.data, "dev.tsv")
    start = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = DebertaV2Tokenizer(train_vocabulary(train_texts, scratch, r["vocab_pieces"], r["seed"]),
                                       do_lower_case=True)
        train_rows = encode(tokenizer, train_texts, r["max_length"])
        dev_x = pad(encode(tokenizer, dev_texts, r["max_length"]), r["max_length"], tokenizer.pad_token_id)
        config = DebertaV2Config(
            vocab_size=len(tokenizer), hidden_size=r["hidden_size"], num_hidden_layers=r["num_hidden_layers"],
            num_attention_heads=r["num_attention_heads"], intermediate_size=r["intermediate_size"],
            max_position_embeddings=512, relative_attention=True, position_buckets=r["position_buckets"],
            norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False,
            type_vocab_size=0, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
            label2id={"NEGATIVE": 0, "POSITIVE": 1}, pad_token_id=tokenizer.pad_token_id)
        model = TFDebertaV2ForSequenceClassification(config)
        batches = length_bucketed_dataset(train_rows, train_labels, r, tokenizer.pad_token_id)
        steps = r["epochs"] * len(batches)
        warmup = int(steps * r["warmup_fraction"])
        schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - warmup,
                                                          warmup_target=r["learning_rate"], warmup_steps=warmup)
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=r["weight_decay"]))
        print(f"training {model.count_params():,} parameters for {steps} steps "
              f"({r['epochs']} epochs of {len(batches)} batches) on {keras.backend.backend()}", flush=True)
        model.fit(batches, epochs=r["epochs"], verbose=2)
        train_seconds = time.time() - start
        logits = model.predict(dev_x, batch_size=256, verbose=0)["logits"]
        accuracy = float((logits.argmax(-1) == dev_labels).mean())
        config.training_recipe = dict(
            r, length_buckets=list(r["length_buckets"]), steps=steps, parameters=model.count_params(),
            data=f"GLUE SST-2 train ({len(train_texts):,} sentences)", dev_accuracy=round(accuracy, 4),
            backend=keras.backend.backend(), train_seconds=round(train_seconds))
        model.save_pretrained(args.output)
        tokenizer.save_pretrained(args.output)
    size = sum(os.path.getsize(os.path.join(args.output, f)) for f in os.listdir(args.output))
    print(json.dumps(config.training_recipe, indent=1))
    print(f"dev accuracy {accuracy:.4f} on {len(dev_labels)} sentences; trained in {train_seconds:.0f} s; "
          f"{size / 1e6:.1f} MB in {args.output}")


if __name__ == "__main__":
    main()

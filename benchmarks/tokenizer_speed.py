"""Tokenizer throughput on 10,000 SST-2 sentences: our Python tokenizers and in-graph layers beside
transformers' tokenizers, in the same run.

    python benchmarks/tokenizer_speed.py [--n 10000] [--batch-size 256]

"batch": one call on the whole list (Python tokenizers) or a batched tf.data pipeline
(`batch(batch_size).map(layer)`, in-graph layers). "single": one call per sentence (Python) or an
unbatched tf.data pipeline (`map(layer)` per sentence). Each figure is one pass over the sentences
after a warm-up on other sentences, in texts per second; the "single" pass follows the "batch" pass
on the same sentences, so BPE caches (ours, transformers', keras-hub's) are warm there for all. Outputs are
padded ids + token types + attention masks (the in-graph layers pad each batch to its longest row).

Vocabularies: the real DeBERTa-v3 SentencePiece model, and GPT-2's BPE with DeBERTa's special tokens
(v1), both from ../shared/data.
"""

import os
import sys

import argparse
import csv
import datetime
import platform
import shutil
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")


def sst2_sentences(n, offset=0):
    with open(os.path.join(DATA, "sentiment", "SST-2", "train.tsv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows[offset:offset + n]]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def python_rates(tok, texts, warm):
    tok(warm, padding=True)
    batch = timed(lambda: tok(texts, padding=True))
    single = timed(lambda: [tok(t) for t in texts])
    return len(texts) / batch, len(texts) / single


def layer_rates(layer, texts, warm, batch_size):
    import tensorflow as tf

    def run(data, batched):
        ds = tf.data.Dataset.from_tensor_slices(data)
        ds = ds.batch(batch_size).map(layer) if batched else ds.map(layer)
        for _ in ds:
            pass

    run(warm, True)
    run(warm[:64], False)
    batch = timed(lambda: run(texts, True))
    single = timed(lambda: run(texts, False))
    return len(texts) / batch, len(texts) / single


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    import transformers

    from keras_deberta.preprocessing import DebertaPreprocessor, DebertaV2Preprocessor
    from keras_deberta.tokenization_deberta import DebertaTokenizer
    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

    texts = sst2_sentences(args.n)
    warm = sst2_sentences(512, offset=args.n)
    work = tempfile.mkdtemp()
    try:
        v3 = os.path.join(work, "v3")
        os.makedirs(v3)
        shutil.copy(os.path.join(DATA, "vocab", "deberta-v3", "spm.model"), v3)
        v1 = os.path.join(work, "v1")
        os.makedirs(v1)
        shutil.copy(os.path.join(DATA, "vocab", "gpt2", "encoder.json"), os.path.join(v1, "vocab.json"))
        shutil.copy(os.path.join(DATA, "vocab", "gpt2", "vocab.bpe"), os.path.join(v1, "merges.txt"))

        rows = []
        for family, ours_cls, hf_cls, layer_cls, directory in (
                ("v2/v3 (SentencePiece)", DebertaV2Tokenizer, transformers.DebertaV2Tokenizer,
                 DebertaV2Preprocessor, v3),
                ("v1 (GPT-2 BPE)", DebertaTokenizer, transformers.DebertaTokenizer, DebertaPreprocessor, v1)):
            hf = hf_cls.from_pretrained(directory)
            ours = ours_cls.from_pretrained(directory)
            rows.append((family, "transformers (Rust tokenizers)", *python_rates(hf, texts, warm)))
            rows.append((family, "ours, Python", *python_rates(ours, texts, warm)))
            layer = layer_cls(ours)
            rows.append((family, "ours, in-graph layer (tf.data)", *layer_rates(layer, texts, warm, args.batch_size)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"# {len(texts)} SST-2 sentences, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()} {os.cpu_count()} CPUs, transformers {transformers.__version__}, "
          f"batch size {args.batch_size} for tf.data")
    print("| family | tokenizer | batch (texts/s) | single (texts/s) |")
    print("|---|---|---:|---:|")
    for family, name, batch, single in rows:
        print(f"| {family} | {name} | {batch:,.0f} | {single:,.0f} |")


if __name__ == "__main__":
    main()

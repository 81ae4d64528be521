"""A fine-tuning script written the way transformers' TensorFlow examples were, unchanged except
for the import line: tokenise with `tokenizer(...)` through `datasets.map`, batch with
`model.prepare_tf_dataset`, `compile(optimizer)` without a loss (the model trains on its own),
`fit`, `save_pretrained` (a checkpoint transformers' PyTorch classes load).

    python examples/hf_tf_style_finetune.py --output /tmp/sst2-finetuned           # SST-2, ../shared/data
    python examples/hf_tf_style_finetune.py --model microsoft/deberta-v3-xsmall ... # a Hub checkpoint

Runs on every Keras backend (KERAS_BACKEND=jax / tensorflow / torch); tf.data feeds `fit` on each.
"""

import argparse
import csv
import os
import sys

import datasets
import numpy as np
import tensorflow as tf

# was: from transformers import DebertaV2Tokenizer, TFDebertaV2ForSequenceClassification
from keras_deberta import DebertaV2Tokenizer, TFDebertaV2ForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
SST2 = os.path.join(HERE, os.pardir, os.pardir, "shared", "data", "sentiment", "SST-2")
BUILT_IN = os.path.join(HERE, os.pardir, "keras_deberta", "assets", "sst2-tiny")


def read_sst2(name, limit):
    """SST-2 from ../shared/data, else from the Hub's `datasets` (GLUE's sst2, when online)."""
    path = os.path.join(SST2, name)
    if not os.path.isfile(path):
        split = "train" if name == "train.tsv" else "validation"
        try:
            hub = datasets.load_dataset("glue", "sst2", split=split)
        except Exception as error:  # offline, or the Hub refused: say what is missing instead
            sys.exit(f"SST-2 is neither at {path} nor downloadable from the Hub "
                     f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        rows = hub.select(range(min(limit, len(hub))))
        return datasets.Dataset.from_dict({"sentence": rows["sentence"], "label": rows["label"]})
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return datasets.Dataset.from_dict({"sentence": [r["sentence"] for r in rows],
                                       "label": [int(r["label"]) for r in rows]})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BUILT_IN, help="checkpoint directory or Hub id")
    parser.add_argument("--output", required=True)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--eval-rows", type=int, default=872)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    args = parser.parse_args(argv)

    raw_train, raw_eval = read_sst2("train.tsv", args.train_rows), read_sst2("dev.tsv", args.eval_rows)
    tokenizer = DebertaV2Tokenizer.from_pretrained(args.model)
    model = TFDebertaV2ForSequenceClassification.from_pretrained(args.model, num_labels=2)

    def tokenize(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=64)

    train = raw_train.map(tokenize, batched=True)
    evaluation = raw_eval.map(tokenize, batched=True)
    tf_train = model.prepare_tf_dataset(train, batch_size=args.batch_size, shuffle=True, tokenizer=tokenizer)
    tf_eval = model.prepare_tf_dataset(evaluation, batch_size=64, shuffle=False, tokenizer=tokenizer)

    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=args.learning_rate))
    model.fit(tf_train, validation_data=tf_eval, epochs=args.epochs)

    logits = model.predict(tf_eval, verbose=0)["logits"]
    accuracy = float(np.mean(np.argmax(logits, -1) == np.asarray(evaluation["label"])))
    print(f"dev accuracy {accuracy:.4f} on {len(evaluation)} sentences")
    model.save_pretrained(args.output)
    tokenizer.save_pretrained(args.output)
    return accuracy


if __name__ == "__main__":
    main()

"""`make demo`: classify, fine-tune, export and serve a DeBERTa sentiment classifier, offline.

    python -m keras_deberta.demo                                    # the embedded default (sst2-tiny)
    python -m keras_deberta.demo --model microsoft/deberta-v3-xsmall  # a Hub checkpoint (network once)
    python -m keras_deberta.demo --model DIR                        # a local checkpoint directory

Five steps, each timed: (1) load the model and its tokenizer; (2) classify a few sentences with
`keras_deberta.pipeline`; (3) fine-tune a few steps with `model.fit` on SST-2 sentences
(../shared/data next to the repository when present, else a few built-in ones) and compare
held-out accuracy before and after; (4) export a TensorFlow SavedModel, with the string-in
`serve_text` signature when the tokenizer can run inside the graph; (5) reload it with
`tf.saved_model.load` and answer one request through it, checked against the in-memory model.

A checkpoint without a sentiment head (e.g. a pre-trained Hub model) gets a fresh two-label head,
with a warning: its predictions mean nothing until it is trained far longer than this demo does.
"""

import argparse
import contextlib
import csv
import os
import random
import sys
import tempfile
import time
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the demo prints its own summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, "..", "shared", "data", "sentiment", "SST-2")
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
SENTENCES = [
    "A delight from start to finish, with a cast that clearly enjoyed every minute.",
    "Tedious, overlong and joyless.",
    "The plot is thin, but the performances make it worth seeing.",
    "I want those two hours of my life back.",
]
# Used for fine-tuning when SST-2 is not on disk (label 1 = positive).
BUILT_IN_EXAMPLES = [
    ("a warm , funny and moving film", 1), ("the best thing i have seen all year", 1),
    ("beautifully shot and wonderfully acted", 1), ("a smart , generous comedy", 1),
    ("an utter waste of time", 0), ("dull , lifeless and badly written", 0),
    ("the jokes fall flat and the story goes nowhere", 0), ("a boring , predictable mess", 0),
]
MAX_LENGTH = 64  # fine-tuning pads every batch to this length (one compiled shape)


def _step(number, title):
    print(f"\n[{number}/5] {title}", flush=True)


@contextlib.contextmanager
def _timed(timings, name):
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def load_classifier(name_or_path=None):
    """(model, tokenizer, directory, fresh_head) for the embedded default or a checkpoint.

    A checkpoint that is already a two-label sequence classifier keeps its head and labels; any
    other (a base or MLM checkpoint, another number of labels) gets a fresh NEGATIVE/POSITIVE head.
    """
    from keras_deberta import TFDebertaForSequenceClassification, TFDebertaV2ForSequenceClassification
    from keras_deberta.pipelines import DEFAULT_MODELS, checkpoint_model_type, load_tokenizer
    from presets.hub import resolve_checkpoint_dir, resolve_config_dict

    directory = resolve_checkpoint_dir(name_or_path or DEFAULT_MODELS["text-classification"])
    model_type = checkpoint_model_type(directory)
    cls = TFDebertaV2ForSequenceClassification if model_type == "deberta-v2" else TFDebertaForSequenceClassification
    config = resolve_config_dict(directory)
    has_sentiment_head = (any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
                          and len(config.get("id2label") or {}) == 2)
    overrides = {} if has_sentiment_head else dict(num_labels=2, id2label=LABELS,
                                                  label2id={v: k for k, v in LABELS.items()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cls.from_pretrained(directory, ignore_mismatched_sizes=not has_sentiment_head, **overrides)
    fresh_head = False
    for warning in caught:
        if "newly initialised" in str(warning.message) or "re-initialis" in str(warning.message):
            fresh_head = True
        print(f"  warning: {warning.message}")
    return model, load_tokenizer(directory, model_type), directory, fresh_head or not has_sentiment_head


def fine_tuning_data(examples=256, held_out=200, seed=0):
    """((train texts, labels), (held-out texts, labels), source): SST-2 train / dev when on disk."""
    def read(name):
        with open(os.path.join(SST2, name), encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        return [(r[0], int(r[1])) for r in rows]

    if os.path.isfile(os.path.join(SST2, "train.tsv")) and os.path.isfile(os.path.join(SST2, "dev.tsv")):
        train = random.Random(seed).sample(read("train.tsv"), examples)
        dev = read("dev.tsv")[:held_out]
        source = f"{examples} SST-2 train sentences; accuracy on the first {held_out} SST-2 dev sentences"
    else:
        train, dev = BUILT_IN_EXAMPLES, BUILT_IN_EXAMPLES
        source = f"{len(train)} built-in sentences (SST-2 not found at {os.path.normpath(SST2)}); accuracy on the same"
    unzip = lambda pairs: ([t for t, _ in pairs], np.array([y for _, y in pairs], dtype="int32"))  # noqa: E731
    return unzip(train), unzip(dev), source


def encode(tokenizer, texts):
    enc = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding="max_length", return_tensors="np")
    inputs = {"input_ids": enc["input_ids"].astype("int32"), "attention_mask": enc["attention_mask"].astype("int32")}
    return inputs


def accuracy(model, tokenizer, texts, labels):
    logits = model.predict(encode(tokenizer, texts), batch_size=64, verbose=0)["logits"]
    return float((np.asarray(logits).argmax(-1) == labels).mean())


def fine_tune(model, tokenizer, texts, labels, learning_rate=1e-4, batch_size=32, epochs=1, seed=0):
    """A few optimizer steps of `model.fit` on the model's own loss; returns the Keras History."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate))
    return model.fit(encode(tokenizer, texts), labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)


def export_and_reload(model, tokenizer, directory, request):
    """Exports a SavedModel (string-in when possible), reloads it with TensorFlow alone and answers
    `request`. Returns (signature name, logits [1, num_labels], note)."""
    import tensorflow as tf

    note = ""
    try:
        model.export(directory, preprocessor=tokenizer)
        string_in = True
    except NotImplementedError as error:  # this tokenizer cannot run inside the graph
        note = f"no string-in signature ({error}); the request is tokenised in Python"
        model.export(directory)
        string_in = False
    served = tf.saved_model.load(directory)
    if string_in:
        outputs = served.signatures["serve_text"](text=tf.constant([request]))
        return "serve_text", outputs["logits"].numpy(), note
    enc = tokenizer([request], return_tensors="np")
    inputs = {name: tf.constant(enc[name].astype("int32")) for name in model.export_input_names}
    outputs = served.signatures["serving_default"](**inputs)
    return "serving_default", outputs["logits"].numpy(), note


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="checkpoint directory or Hub id (default: the embedded sst2-tiny classifier)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="write the SavedModel here instead of a temporary directory")
    args = parser.parse_args(argv)

    import keras

    from keras_deberta import pipeline

    timings = {}
    started = time.perf_counter()
    print(f"keras_deberta demo on Keras {keras.__version__}, backend {keras.backend.backend()}")

    _step(1, "load the classifier")
    with _timed(timings, "load"):
        model, tokenizer, directory, fresh_head = load_classifier(args.model)
    recipe = getattr(model.config, "training_recipe", None)
    print(f"  {args.model or 'embedded default'} ({directory})")
    print(f"  {type(model).__name__}: {model.count_params():,} parameters, {model.config.num_hidden_layers} layers, "
          f"hidden {model.config.hidden_size}, vocabulary {model.config.vocab_size:,}")
    if recipe:
        print(f"  trained from scratch on SST-2: dev accuracy {recipe['dev_accuracy']:.1%} "
              f"(examples/train_default_classifier.py)")
    if fresh_head:
        print("  the NEGATIVE/POSITIVE head is new (random): predictions below are noise until it is trained")

    _step(2, "classify with keras_deberta.pipeline('text-classification')")
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    with _timed(timings, "classify"):
        answers = classify(SENTENCES)
    for text, answer in zip(SENTENCES, answers):
        print(f"  {answer['label']:>8} {answer['score']:.3f}  {text}")

    _step(3, "fine-tune a few steps with model.fit")
    (train_texts, train_labels), (dev_texts, dev_labels), source = fine_tuning_data()
    print(f"  data: {source}")
    with _timed(timings, "fine-tune"):
        before = accuracy(model, tokenizer, dev_texts, dev_labels)
        history = fine_tune(model, tokenizer, train_texts, train_labels)
        after = accuracy(model, tokenizer, dev_texts, dev_labels)
    steps = int(np.ceil(len(train_texts) / 32))
    change = after - before
    verdict = ("unchanged" if abs(change) < 1e-9 else f"{'up' if change > 0 else 'down'} {abs(change):.1%}")
    # What was measured, with its size: a few steps on a few hundred sentences move a trained model's
    # held-out accuracy by a sentence or two either way (noise); the step shows fit runs, not a gain.
    print(f"  {steps} steps of AdamW(1e-4), batch 32: loss {history.history['loss'][-1]:.4f}; "
          f"held-out accuracy {before:.1%} before, {after:.1%} after ({verdict} on {len(dev_labels)} "
          f"sentences; a few steps show that fit runs, they are not meant to improve the model)")

    with tempfile.TemporaryDirectory() as scratch:
        export_dir = args.keep or os.path.join(scratch, "saved_model")
        request = SENTENCES[0]
        _step(4, "export a TensorFlow SavedModel")
        with _timed(timings, "export + reload + serve"):
            signature, served_logits, note = export_and_reload(model, tokenizer, export_dir, request)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(export_dir) for f in files)
        print(f"  {export_dir}: {size / 1e6:.1f} MB" + (f"\n  note: {note}" if note else ""))
        _step(5, f"reload with tf.saved_model.load and ask signature {signature!r}")
        expected = classify(request, top_k=None)
        probabilities = np.exp(served_logits[0] - served_logits[0].max())
        probabilities /= probabilities.sum()
        label = model.config.id2label.get(int(probabilities.argmax()), str(int(probabilities.argmax())))
        in_memory = {a["label"]: a["score"] for a in expected}
        difference = max(abs(float(p) - in_memory[model.config.id2label.get(i, str(i))])
                         for i, p in enumerate(probabilities))
        print(f"  request: {request!r}")
        print(f"  answer:  {label} {probabilities.max():.3f}  (max |difference| from the in-memory model: "
              f"{difference:.1e})")

    total = time.perf_counter() - started
    print("\nsummary: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())
          + f"; total {total:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

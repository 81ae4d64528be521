"""Pretrain a small DeBERTa-v3 with replaced-token detection (RTD + GDES + EMD generator), then
fine-tune SST-2 from it, from an MLM-only model pretrained for the same time, and from random init.

    KERAS_BACKEND=jax python examples/pretrain_rtd.py [--pretrain-seconds 150] [--finetune-examples 6000]

Text: WikiText-2 (valid + test), tiny-shakespeare and the SST-2 train / MR sentences without their
labels, from ../shared/data, tokenised with the real DeBERTa-v3 SentencePiece model
(../shared/data/vocab/deberta-v3, vocabulary 128,100 with [MASK] = 128000) and packed into
[CLS] ... [SEP] rows. Dynamic whole-word masking (15%, 80/10/10) runs in tf.data.

The three encoders have the same v3 shape (hidden 128, 4 layers, 256 log buckets, shared keys,
c2p + p2c). RTD trains a 2-layer generator with the enhanced mask decoder and the 4-layer
discriminator with GDES and decoupled optimizers (the original recipe), rtd_lambda 50. The MLM-only
baseline trains the 4-layer encoder as a masked LM with the enhanced mask decoder, for the same
wall-clock time (compilation excluded): equal compute on this machine. Each encoder is then
fine-tuned on the same SST-2 sentences with the same budget, and dev accuracy is printed.
"""

import argparse
import csv
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")
SPM_DIR = os.path.join(DATA, "vocab", "deberta-v3")
SST2 = os.path.join(DATA, "sentiment", "SST-2")

SMALL_V3 = dict(
    vocab_size=128100, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
    max_position_embeddings=512, relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
    share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0,
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
)
GENERATOR_LAYERS = 2  # half the discriminator's depth, as the original rtd configs


def read_sst2(name, limit=None):
    with open(os.path.join(SST2, name), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:limit] if limit else rows
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows], dtype="int32")


def pretraining_text():
    """Unlabelled lines of every corpus (SST-2 dev, the evaluation set, is left out)."""
    lines = []
    for name in ("valid.txt", "test.txt"):
        with open(os.path.join(DATA, "lm", "wikitext-2", name), encoding="utf-8") as f:
            lines += [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("=")]
    with open(os.path.join(DATA, "lm", "tinyshakespeare", "input.txt"), encoding="utf-8") as f:
        lines += [block.replace("\n", " ") for block in f.read().split("\n\n") if block.strip()]
    lines += read_sst2("train.tsv")[0]
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        with open(os.path.join(DATA, "sentiment", "MR", name), encoding="latin-1") as f:
            lines += [ln.strip() for ln in f if ln.strip()]
    return lines


def pack(tokenizer, lines, length, rows, seed):
    """Token stream of shuffled lines cut into [CLS] + (length - 2) pieces + [SEP] rows -> [rows, length]."""
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(lines))
    body = length - 2
    stream, out = [], []
    for i in order:
        stream.extend(tokenizer.encode(lines[i], add_special_tokens=False))
        while len(stream) >= body and len(out) < rows:
            out.append([tokenizer.cls_token_id] + stream[:body] + [tokenizer.sep_token_id])
            stream = stream[body:]
        if len(out) >= rows:
            break
    return np.array(out, dtype="int32")


class TimeBudget:
    """Stops `fit` once `seconds` of training have passed after the first (compiling) step."""

    def __init__(self, seconds):
        import keras

        budget = seconds

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start, self.steps, self.first = None, 0, None

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1
                if self.start is None:  # the first step compiled the program
                    self.start, self.first = time.perf_counter(), logs
                elif time.perf_counter() - self.start > budget:
                    self.model.stop_training = True
                self.last = logs

        self.callback = Callback()


def pretrain(pretrainer, data, seconds, label):
    budget = TimeBudget(seconds)
    pretrainer.fit(data, epochs=1, steps_per_epoch=10**6, verbose=0, callbacks=[budget.callback])
    cb = budget.callback
    elapsed = time.perf_counter() - cb.start
    first = {k: round(float(v), 3) for k, v in cb.first.items()}
    last = {k: round(float(v), 3) for k, v in cb.last.items()}
    print(f"{label}: {cb.steps} steps in {elapsed:.0f} s (+ compile); first step {first}; mean over the run {last}",
          flush=True)
    return cb.steps


def finetune(encoder_dir, train, train_y, dev, dev_y, args, label):
    import keras

    from keras_deberta import DebertaV2Config, TFDebertaV2ForSequenceClassification

    keras.utils.set_random_seed(args.seed)
    if encoder_dir is None:
        model = TFDebertaV2ForSequenceClassification(DebertaV2Config(**SMALL_V3, num_labels=2))
    else:
        model = TFDebertaV2ForSequenceClassification.from_pretrained(encoder_dir, num_labels=2)
    steps = args.finetune_epochs * -(-len(train_y) // args.finetune_batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=args.finetune_lr,
                                                      warmup_steps=max(1, steps // 10))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01))
    start = time.perf_counter()
    model.fit(train, train_y, batch_size=args.finetune_batch_size, epochs=args.finetune_epochs, verbose=0)
    logits = np.asarray(model.predict(dev, batch_size=128, verbose=0)["logits"])
    accuracy = float((logits.argmax(-1) == dev_y).mean())
    print(f"fine-tune from {label}: SST-2 dev accuracy {accuracy:.4f} ({time.perf_counter() - start:.0f} s)",
          flush=True)
    return accuracy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-seconds", type=float, default=150)
    parser.add_argument("--pretrain-rows", type=int, default=20000)
    parser.add_argument("--length", type=int, default=48, help="pretraining rows (fine-tuning: --finetune-length)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--finetune-length", type=int, default=64)
    parser.add_argument("--finetune-batch-size", type=int, default=32)
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--finetune-examples", type=int, default=6000)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.path.exists(os.path.join(SPM_DIR, "spm.model")):
        sys.exit(f"needs ../shared/data (text corpora, SST-2 and the DeBERTa-v3 vocabulary); not found at {DATA}")

    import keras
    import tensorflow as tf

    import keras_deberta as kd
    from keras_deberta.pretraining import MaskedLMPretrainer

    total_start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    tok = kd.DebertaV2Tokenizer.from_pretrained(SPM_DIR)
    rows = pack(tok, pretraining_text(), args.length, args.pretrain_rows, args.seed)
    max_predictions = int(np.ceil(0.15 * (args.length - 2))) + 2
    masker = kd.DynamicMasking.from_tokenizer(tok, whole_word=True, seed=args.seed, max_predictions=max_predictions)
    data = (tf.data.Dataset.from_tensor_slices({"input_ids": rows, "attention_mask": np.ones_like(rows)})
            .shuffle(len(rows), seed=args.seed).repeat().batch(args.batch_size, drop_remainder=True)
            .map(masker).prefetch(2))
    print(f"backend {keras.backend.backend()}: {len(rows)} packed rows of {args.length} tokens "
          f"({time.perf_counter() - total_start:.0f} s to tokenise)", flush=True)

    def optimizer():
        schedule = keras.optimizers.schedules.CosineDecay(0.0, 10**6, warmup_target=args.pretrain_lr,
                                                          warmup_steps=50)  # ~constant after warm-up
        return keras.optimizers.AdamW(schedule, weight_decay=0.01)

    # (a) RTD: generator (EMD, half depth) + discriminator, GDES, decoupled optimizers.
    keras.utils.set_random_seed(args.seed)
    generator = kd.TFDebertaV2ForMaskedLM(kd.DebertaV2Config(
        **{**SMALL_V3, "num_hidden_layers": GENERATOR_LAYERS}, enhanced_mask_decoder=True))
    discriminator = kd.TFDebertaV2ForReplacedTokenDetection(kd.DebertaV2Config(**SMALL_V3))
    # The discriminator starts from the generator's table: the GDES delta starts at zero.
    discriminator.deberta.embeddings.word_embeddings.embeddings.assign(
        generator.deberta.embeddings.word_embeddings.embeddings)
    rtd = kd.DebertaV3RTDPretrainer(generator=generator, discriminator=discriminator, rtd_lambda=50.0,
                                    embedding_sharing="gdes", seed=args.seed, max_predictions_per_seq=max_predictions)
    rtd.compile(generator_optimizer=optimizer(), discriminator_optimizer=optimizer())
    rtd_steps = pretrain(rtd, data, args.pretrain_seconds, "RTD pretraining")

    # (b) MLM only, the discriminator's shape with the enhanced mask decoder, same time.
    keras.utils.set_random_seed(args.seed)
    mlm_model = kd.TFDebertaV2ForMaskedLM(kd.DebertaV2Config(**SMALL_V3, enhanced_mask_decoder=True))
    mlm = MaskedLMPretrainer(mlm_model, max_predictions_per_seq=max_predictions)
    mlm.compile(optimizer=optimizer())
    mlm_steps = pretrain(mlm, data, args.pretrain_seconds, "MLM-only pretraining")

    with tempfile.TemporaryDirectory() as tmp:
        rtd_dir, mlm_dir = os.path.join(tmp, "rtd"), os.path.join(tmp, "mlm")
        rtd.discriminator.save_pretrained(rtd_dir)  # GDES delta folded into its word embeddings
        mlm_model.save_pretrained(mlm_dir)

        def encode(sentences):
            enc = tok(sentences, truncation=True, max_length=args.finetune_length, padding="max_length",
                      return_tensors="np")
            return {"input_ids": enc["input_ids"].astype("int32"), "attention_mask": enc["attention_mask"].astype("int32")}

        train_x, train_y = read_sst2("train.tsv", args.finetune_examples)
        dev_x, dev_y = read_sst2("dev.tsv")
        train, dev = encode(train_x), encode(dev_x)
        results = [("RTD (GDES) discriminator", rtd_steps, finetune(rtd_dir, train, train_y, dev, dev_y, args, "RTD")),
                   ("MLM only (EMD), same time", mlm_steps,
                    finetune(mlm_dir, train, train_y, dev, dev_y, args, "MLM only")),
                   ("random init", 0, finetune(None, train, train_y, dev, dev_y, args, "random init"))]

    print(f"\n| start of fine-tuning | pretraining steps ({args.pretrain_seconds:.0f} s each) | SST-2 dev accuracy |")
    print("|---|---|---|")
    for name, steps, accuracy in results:
        print(f"| {name} | {steps} | {accuracy:.4f} |")
    print(f"\ntotal {time.perf_counter() - total_start:.0f} s; fine-tuning: {len(train_y)} sentences x "
          f"{args.finetune_epochs} epoch(s), batch {args.finetune_batch_size}, length {args.finetune_length}; "
          f"pretraining: batch {args.batch_size} x {args.length} tokens")


if __name__ == "__main__":
    main()

"""Writes the notebooks of this folder from the cell sources below (outputs stripped).

Edit a notebook here, then `python notebooks/make_notebooks.py`: the .ipynb files stay consistent
(same install cell, backend cell and data-path cell) and carry no outputs in git.
"""

import os

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

INSTALL = '''# In Colab: install the package from the repository (CI and local runs already have it).
import sys
if "google.colab" in sys.modules:
    !pip install -q "keras-deberta-deepseek[tensorflow,jax] @ git+https://github.com/OWNER/keras-deberta-deepseek"'''

BACKEND = '''# Pick the Keras backend before keras is imported: "jax", "tensorflow" or "torch".
import os
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
print("Keras", keras.__version__, "on", keras.backend.backend())'''

DATA = '''# The data: the project's copy (../shared/data beside the repository) when it is there, else
# (Colab) the same files fetched from the Hugging Face Hub into ./data in the same layout.
DATA_DIR = os.path.abspath(os.path.join(os.getcwd(), "..", "..", "shared", "data"))
if not os.path.isdir(DATA_DIR):
    import csv, json, shutil
    import datasets, huggingface_hub
    DATA_DIR = os.path.abspath("data")
    vocab = os.path.join(DATA_DIR, "vocab", "deberta-v3")
    os.makedirs(vocab, exist_ok=True)
    shutil.copy(huggingface_hub.hf_hub_download("microsoft/deberta-v3-base", "spm.model"), vocab)
    sst2 = os.path.join(DATA_DIR, "sentiment", "SST-2")
    os.makedirs(sst2, exist_ok=True)
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        with open(os.path.join(sst2, name), "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\\t", quoting=csv.QUOTE_NONE, escapechar="\\\\")
            writer.writerow(["sentence", "label"])
            for row in datasets.load_dataset("glue", "sst2", split=split):
                writer.writerow([row["sentence"].strip(), row["label"]])
    xquad = datasets.load_dataset("google/xquad", "xquad.en", split="validation")
    paragraphs = [{"context": r["context"], "qas": [{"question": r["question"], "answers": [
        {"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
        for r in xquad]
    os.makedirs(os.path.join(DATA_DIR, "qa", "xquad"), exist_ok=True)
    with open(os.path.join(DATA_DIR, "qa", "xquad", "xquad.en.json"), "w", encoding="utf-8") as f:
        json.dump({"data": [{"title": "xquad", "paragraphs": paragraphs}]}, f)
print("data:", DATA_DIR)'''


def notebook(title, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["colab"] = {"provenance": []}
    nb.cells = [nbformat.v4.new_code_cell(INSTALL), nbformat.v4.new_markdown_cell(title),
                nbformat.v4.new_code_cell(BACKEND)]
    for kind, source in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(make(source.strip("\n")))
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives identical files
        cell["id"] = f"cell-{i}"
    return nb


DEEPSEEK = notebook("""# DeepSeek-V2 generation with the latent (MLA) cache

DeepSeek-V2's Multi-head Latent Attention caches one compressed latent and one shared roped key per
token and layer instead of a key and a value per head. This notebook builds a tiny random
`TFDeepseekV2ForCausalLM`, generates greedily and by sampling, and plots what the cache costs
against the context length.

**On a GPU**: `TFDeepseekV2ForCausalLM.from_pretrained("deepseek-ai/DeepSeek-V2-Lite-Chat")` (16B
parameters, about 32 GB in bfloat16: an 80 GB card, or `model.quantize("int8")` for about half) and
its tokenizer with `keras_deepseek.DeepseekV2Tokenizer.from_pretrained(...)`.""", [
    ("code", '''
import numpy as np
from keras_deepseek import DeepseekV2Config, TFDeepseekV2ForCausalLM

# Tiny settings for a CPU. On a GPU, load a real checkpoint instead (see above).
config = DeepseekV2Config(
    vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
    num_hidden_layers=2, num_attention_heads=4, kv_lora_rank=32, q_lora_rank=None,
    qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
    num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, max_position_embeddings=512,
    pad_token_id=0, bos_token_id=1, eos_token_id=2)
model = TFDeepseekV2ForCausalLM(config)
'''),
    ("code", '''
prompts = np.array([[1, 17, 42, 99, 7], [0, 0, 1, 23, 5]], dtype="int32")  # left-padded batch
mask = (prompts != 0).astype("int32")
mask[:, 2] = 1  # the second row starts at its bos in column 2
greedy = model.generate(prompts, attention_mask=mask, max_new_tokens=12, do_sample=False)
sampled = model.generate(prompts, attention_mask=mask, max_new_tokens=12, do_sample=True,
                         temperature=0.8, top_k=20, top_p=0.95, seed=0)
print("greedy :", np.asarray(greedy)[:, prompts.shape[1]:])
print("sampled:", np.asarray(sampled)[:, prompts.shape[1]:])
again = model.generate(prompts, attention_mask=mask, max_new_tokens=12, do_sample=True,
                       temperature=0.8, top_k=20, top_p=0.95, seed=0)
assert (np.asarray(again) == np.asarray(sampled)).all(), "a seed makes sampling reproducible"
print(f"{model.count_params():,} parameters")
'''),
    ("md", """## Cache memory against context length

MLA keeps `kv_lora_rank + qk_rope_head_dim` values per token and layer. Per-head K/V would keep
`num_heads * (qk_nope_head_dim + qk_rope_head_dim + v_head_dim)`. Below: the tiny model (measured
by the model itself) and the published DeepSeek-V2 and V2-Lite configurations, in bfloat16."""),
    ("code", '''
def cache_values(cfg):
    latent = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
    per_head = cfg["num_attention_heads"] * (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"] + cfg["v_head_dim"])
    return latent, per_head

published = {  # from the checkpoints' config.json files
    "DeepSeek-V2": dict(num_hidden_layers=60, num_attention_heads=128, kv_lora_rank=512,
                        qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128),
    "DeepSeek-V2-Lite": dict(num_hidden_layers=27, num_attention_heads=16, kv_lora_rank=512,
                             qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128),
}
tiny = dict(num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
            kv_lora_rank=config.kv_lora_rank, qk_nope_head_dim=config.qk_nope_head_dim,
            qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim)
latent, _ = cache_values(tiny)
assert model.cache_bytes_per_token() == tiny["num_hidden_layers"] * latent * 4, "float32 latent cache"
for name, cfg in {"tiny (this notebook)": tiny, **published}.items():
    latent, per_head = cache_values(cfg)
    print(f"{name:22s} latent {latent:6d} vs per-head K/V {per_head:6d} values/token/layer "
          f"({per_head / latent:.0f}x smaller)")
'''),
    ("code", '''
import matplotlib.pyplot as plt

lengths = np.array([1024, 4096, 16384, 32768, 65536, 131072])
fig, ax = plt.subplots(figsize=(6, 4))
for name, cfg in published.items():
    latent, per_head = cache_values(cfg)
    gib = lengths * cfg["num_hidden_layers"] * 2 / 2**30  # bfloat16, batch 1
    ax.plot(lengths, gib * latent, marker="o", label=f"{name}: MLA latent")
    ax.plot(lengths, gib * per_head, marker="x", linestyle="--", label=f"{name}: per-head K/V")
ax.set_xscale("log", base=2); ax.set_yscale("log")
ax.set_xlabel("context length (tokens)"); ax.set_ylabel("cache (GiB, bf16, batch 1)")
ax.set_title("Decoding cache memory"); ax.legend(fontsize=7); ax.grid(True, which="both", alpha=0.3)
plt.show()
'''),
])


EXPORT = notebook("""# Export a SavedModel and serve it

`model.export(path)` writes a TensorFlow SavedModel from any Keras backend (TensorFlow, JAX, or
PyTorch through a TensorFlow subprocess). `serving_default` takes int32 `input_ids`,
`attention_mask`, `token_type_ids` of any batch and length; with `preprocessor=tokenizer` a
`serve_text` signature takes raw strings and tokenises inside the graph.

**On a GPU**: load a real checkpoint, e.g.
`TFDebertaV2ForSequenceClassification.from_pretrained("microsoft/deberta-v3-small", num_labels=2)`,
fine-tune it, and export the same way.""", [
    ("code", DATA),
    ("code", '''
import tempfile
import numpy as np
from keras_deberta import DebertaV2Config, DebertaV2Tokenizer, TFDebertaV2ForSequenceClassification

spm_path = os.path.join(DATA_DIR, "vocab", "deberta-v3", "spm.model")
tokenizer = DebertaV2Tokenizer(spm_path)  # the real DeBERTa-v3 SentencePiece vocabulary
config = DebertaV2Config(  # tiny and random, for a CPU
    vocab_size=128100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    relative_attention=True, position_buckets=32, norm_rel_ebd="layer_norm", share_att_key=True,
    pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0, num_labels=2)
model = TFDebertaV2ForSequenceClassification(config)
texts = ["A delight from start to finish.", "Tedious, overlong and joyless."]
batch = tokenizer(texts, padding=True, return_tensors="np")
keras_logits = np.asarray(keras.ops.convert_to_numpy(model(dict(batch)).logits))
print(keras_logits)
'''),
    ("code", '''
export_dir = os.path.join(tempfile.mkdtemp(), "deberta", "1")  # TF Serving wants a version number
model.export(export_dir, preprocessor=tokenizer)
print(sorted(os.listdir(export_dir)))
'''),
    ("code", '''
import subprocess
cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
shown = subprocess.run([cli, "show", "--dir", export_dir, "--all"], capture_output=True, text=True).stdout
print(shown[:3000])
'''),
    ("code", '''
import tensorflow as tf
import tensorflow_text  # registers the tokeniser ops the string signature uses

loaded = tf.saved_model.load(export_dir)
ids_out = loaded.signatures["serving_default"](**{k: tf.constant(v, tf.int32) for k, v in batch.items()})
text_out = loaded.signatures["serve_text"](text=tf.constant(texts))
print("serving_default:", ids_out["logits"].numpy())
print("serve_text     :", text_out["logits"].numpy())
np.testing.assert_allclose(ids_out["logits"].numpy(), keras_logits, atol=1e-4)
np.testing.assert_allclose(text_out["logits"].numpy(), keras_logits, atol=1e-4)
print("the SavedModel matches the Keras model")
'''),
    ("md", """## Serving with TensorFlow Serving

```bash
docker run -p 8501:8501 --mount type=bind,source=/path/to/deberta,target=/models/deberta \\
  -e MODEL_NAME=deberta -t tensorflow/serving
curl -X POST localhost:8501/v1/models/deberta:predict \\
  -d '{"signature_name": "serve_text", "inputs": {"text": ["I loved this movie"]}}'
```
Out-of-range ids or mis-shaped masks are refused with a 400 that names the input."""),
])


TINY_V3 = """DebertaV2Config(  # tiny and random for a CPU; on a GPU use from_pretrained (see the top)
    vocab_size=128100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    relative_attention=True, position_buckets=64, norm_rel_ebd="layer_norm", share_att_key=True,
    pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0, max_position_embeddings=512"""

FINETUNE = notebook("""# Fine-tune DeBERTa-v3 for text classification with `model.fit`

SST-2 sentiment with `TFDebertaV2ForSequenceClassification` and the real DeBERTa-v3 SentencePiece
vocabulary. `compile(optimizer=...)` without a loss trains on the model's own loss, as
transformers' TF models did; `compile(loss=..., metrics=...)` works on the logits too.

**On a GPU**: `TFDebertaV2ForSequenceClassification.from_pretrained("microsoft/deberta-v3-small",
num_labels=2)`, `TRAIN_ROWS = None` (all 67k sentences), `MAX_LENGTH = 128`, `EPOCHS = 3`,
`BATCH = 32`, learning rate 2e-5 with warmup.""", [
    ("code", DATA),
    ("code", '''
import csv
import numpy as np
from keras_deberta import DebertaV2Config, DebertaV2Tokenizer, TFDebertaV2ForSequenceClassification

TRAIN_ROWS, DEV_ROWS, MAX_LENGTH, EPOCHS, BATCH = 2000, 300, 48, 3, 32  # CPU settings

def read_sst2(name, rows):
    with open(os.path.join(DATA_DIR, "sentiment", "SST-2", name), encoding="utf-8") as f:
        data = list(csv.reader(f, delimiter="\\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in data[:rows]], np.array([int(r[1]) for r in data[:rows]])

train_texts, train_labels = read_sst2("train.tsv", TRAIN_ROWS)
dev_texts, dev_labels = read_sst2("dev.tsv", DEV_ROWS)
tokenizer = DebertaV2Tokenizer(os.path.join(DATA_DIR, "vocab", "deberta-v3", "spm.model"))
encode = lambda texts: dict(tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding="max_length",
                                      return_tensors="np"))
train_x, dev_x = encode(train_texts), encode(dev_texts)
print(len(train_texts), "training sentences, e.g.", train_texts[0], "->", train_labels[0])
'''),
    ("code", '''
keras.utils.set_random_seed(0)
config = TINY_CONFIG, num_labels=2)
model = TFDebertaV2ForSequenceClassification(config)
model.compile(optimizer=keras.optimizers.AdamW(learning_rate=5e-4, weight_decay=0.01))
history = model.fit(train_x, train_labels, validation_data=(dev_x, dev_labels), epochs=EPOCHS,
                    batch_size=BATCH, verbose=2)
'''.replace("TINY_CONFIG", TINY_V3)),
    ("code", '''
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(range(1, EPOCHS + 1), history.history["loss"], marker="o", label="train")
ax.plot(range(1, EPOCHS + 1), history.history["val_loss"], marker="o", label="dev")
ax.set_xlabel("epoch"); ax.set_ylabel("cross-entropy"); ax.set_title("SST-2 fine-tuning"); ax.legend()
plt.show()
logits = model.predict(dev_x, batch_size=64, verbose=0)["logits"]
print(f"dev accuracy: {(logits.argmax(-1) == dev_labels).mean():.3f} on {len(dev_labels)} sentences "
      "(a tiny random model on 2,000 sentences: expect above chance, far below a pretrained one)")
'''),
    ("md", """## Less memory: LoRA adapters and int8

`model.enable_lora(rank)` adds low-rank adapters to the attention projections (`query_proj`,
`key_proj`, `value_proj`) and freezes everything else except the task head; `fit` then trains only
those. `merge_lora()` folds the adapters back into the kernels. `model.quantize("int8")` stores the
weights in int8 (about 4x smaller); the quantized model saves and reloads as a `.keras` file.

**On a GPU**: `enable_lora(8)` on `from_pretrained("microsoft/deberta-v3-base", num_labels=2)`
trains well under 1% of the parameters."""),
    ("code", '''
lora_model = TFDebertaV2ForSequenceClassification(config)
lora_model.set_weights(model.get_weights())  # continue from the fine-tuned weights
adapted = lora_model.enable_lora(4)
trainable = sum(int(np.prod(v.shape)) for v in lora_model.trainable_variables)
print(f"LoRA on {len(adapted)} projections: {trainable:,} trainable of {lora_model.count_params():,} parameters")
frozen_before = lora_model.deberta.embeddings.word_embeddings.get_weights()[0].copy()
lora_model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3))
lora_model.fit(train_x, train_labels, epochs=1, batch_size=BATCH, verbose=2)
assert (lora_model.deberta.embeddings.word_embeddings.get_weights()[0] == frozen_before).all(), "backbone frozen"
lora_model.merge_lora()
lora_logits = lora_model.predict(dev_x, batch_size=64, verbose=0)["logits"]
print(f"after one LoRA epoch, merged: dev accuracy {(lora_logits.argmax(-1) == dev_labels).mean():.3f}")
'''),
    ("code", '''
import tempfile

model.quantize("int8")
int8_logits = model.predict(dev_x, batch_size=64, verbose=0)["logits"]
print(f"int8: dev accuracy {(int8_logits.argmax(-1) == dev_labels).mean():.3f}, "
      f"same prediction as float32 on {(int8_logits.argmax(-1) == logits.argmax(-1)).mean():.1%} of sentences, "
      f"largest logit change {np.abs(int8_logits - logits).max():.4f}")
path = os.path.join(tempfile.mkdtemp(), "sst2-int8.keras")
model.save(path)
reloaded = keras.saving.load_model(path)
assert (reloaded.predict(dev_x, batch_size=64, verbose=0)["logits"] == int8_logits).all()
print(f"saved and reloaded: {os.path.getsize(path) / 2**20:.1f} MB on disk")
'''),
])

QA = notebook("""# Extractive question answering

`TFDebertaV2ForQuestionAnswering` predicts a start and an end token; offsets map the span back to
the context's characters. Questions from XQuAD (SQuAD v1.1 format). The model here is tiny and
random, so the notebook shows the mechanics: it memorises a small training set, and answers are
read back from the context by offsets.

**On a GPU**: `TFDebertaV2ForQuestionAnswering.from_pretrained("deepset/deberta-v3-base-squad2")`
(or fine-tune `microsoft/deberta-v3-base` on SQuAD with `MAX_LENGTH = 384`, all examples).""", [
    ("code", DATA),
    ("code", '''
import json
import numpy as np
from keras_deberta import DebertaV2Config, DebertaV2Tokenizer, TFDebertaV2ForQuestionAnswering

EXAMPLES, MAX_LENGTH, EPOCHS = 32, 192, 30  # CPU settings
with open(os.path.join(DATA_DIR, "qa", "xquad", "xquad.en.json"), encoding="utf-8") as f:
    squad = json.load(f)["data"]
examples = [(qa["question"], para["context"], qa["answers"][0])
            for article in squad for para in article["paragraphs"] for qa in para["qas"]]
tokenizer = DebertaV2Tokenizer(os.path.join(DATA_DIR, "vocab", "deberta-v3", "spm.model"))

rows = []
for question, context, answer in examples:
    enc = tokenizer(question, context, truncation="only_second", max_length=MAX_LENGTH, padding="max_length",
                    return_offsets_mapping=True, return_tensors="np")
    offsets, in_context = enc["offset_mapping"][0], enc["token_type_ids"][0] == 1
    a0, a1 = answer["answer_start"], answer["answer_start"] + len(answer["text"])
    inside = np.where(in_context & (offsets[:, 1] > a0) & (offsets[:, 0] < a1))[0]
    if len(inside) and offsets[inside[-1], 1] >= a1:  # the whole answer survived truncation
        rows.append((enc, inside[0], inside[-1], question, context, answer["text"]))
    if len(rows) == EXAMPLES:
        break
x = {k: np.concatenate([r[0][k] for r in rows]) for k in ("input_ids", "attention_mask", "token_type_ids")}
starts, ends = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
print(len(rows), "examples; e.g.", rows[0][3], "->", rows[0][5])
'''),
    ("code", '''
keras.utils.set_random_seed(0)
config = TINY_CONFIG)
model = TFDebertaV2ForQuestionAnswering(config)
model.compile(optimizer=keras.optimizers.Adam(learning_rate=2e-3))
history = model.fit(x, {"start_positions": starts, "end_positions": ends}, epochs=EPOCHS, batch_size=8, verbose=0)
print("loss: first epoch %.2f, last %.2f" % (history.history["loss"][0], history.history["loss"][-1]))
'''.replace("TINY_CONFIG", TINY_V3)),
    ("code", '''
def best_span(start_logits, end_logits, in_context, max_answer_len=30):
    """The (start, end) over context tokens with the highest start + end score, end >= start."""
    s = np.where(in_context, start_logits, -np.inf)
    e = np.where(in_context, end_logits, -np.inf)
    scores = s[:, None] + e[None, :]
    length = np.arange(len(s))[None, :] - np.arange(len(s))[:, None]
    scores[(length < 0) | (length >= max_answer_len)] = -np.inf
    return np.unravel_index(np.argmax(scores), scores.shape)

out = model.predict(x, verbose=0)
exact = 0
for i, (enc, _, _, question, context, gold) in enumerate(rows):
    offsets = enc["offset_mapping"][0]
    s, e = best_span(out["start_logits"][i], out["end_logits"][i], enc["token_type_ids"][0] == 1)
    answer = context[offsets[s][0]:offsets[e][1]].strip()
    exact += answer == gold.strip()
    if i < 4:
        print(f"{question[:50]!r:54s} gold {gold!r:28s} predicted {answer!r}")
print(f"exact match on the memorised training set: {exact}/{len(rows)}")
'''),
])


# --- DeBERTa-v3 pretraining: replaced-token detection with GDES -------------------------------
RTD = notebook("""# Pretrain DeBERTa-v3 the way the paper did: replaced-token detection with GDES

DeBERTa-v3 is an ELECTRA-style pair: a small **generator** (a masked LM with DeBERTa's *enhanced
mask decoder*) fills masked positions with samples, and the **discriminator** (the model the Hub
ships) learns which tokens were replaced. With *gradient-disentangled embedding sharing* (GDES) the
discriminator's word embeddings are `stop_gradient(generator's) + delta`: the replaced-token loss
trains only the delta. This notebook masks real text with the real v3 vocabulary in `tf.data`,
trains a tiny pair with `fit` (two optimizers, as the original recipe), looks at what the
discriminator flags, and saves both models as checkpoints transformers loads.

**On a GPU**: the v3-base shapes (hidden 768, 12 layers; generator 6 layers), `ROWS` in the
millions, `LENGTH = 512`, `BATCH = 64+`, learning rate ~1e-4 with warm-up, and
`max_predictions_per_seq = 80`. `examples/pretrain_rtd.py` compares RTD, MLM-only and random init
on SST-2.""", [
    ("code", DATA),
    ("code", """
import csv
import numpy as np
import tensorflow as tf
import keras_deberta as kd

ROWS, LENGTH, BATCH, STEPS = 512, 32, 16, 24  # CPU settings
tokenizer = kd.DebertaV2Tokenizer.from_pretrained(os.path.join(DATA_DIR, "vocab", "deberta-v3"))
with open(os.path.join(DATA_DIR, "sentiment", "SST-2", "train.tsv"), encoding="utf-8") as f:
    texts = [r[0] for r in list(csv.reader(f, delimiter="\\t", quoting=csv.QUOTE_NONE))[1:ROWS + 1]]  # labels unused
enc = tokenizer(texts, truncation=True, max_length=LENGTH, padding="max_length", return_tensors="np")
ids, mask = enc["input_ids"].astype("int32"), enc["attention_mask"].astype("int32")

# Dynamic whole-word masking (15%, 80/10/10) in TensorFlow ops: runs in tf.data on every backend.
masker = kd.DynamicMasking.from_tokenizer(tokenizer, whole_word=True, seed=0, max_predictions=6)
example = masker({"input_ids": ids[:1], "attention_mask": mask[:1]})
print(tokenizer.decode(ids[0], skip_special_tokens=True))
print(tokenizer.decode(np.asarray(example["input_ids"])[0][np.asarray(mask[0]) == 1]))
data = (tf.data.Dataset.from_tensor_slices({"input_ids": ids, "attention_mask": mask})
        .shuffle(ROWS, seed=0).repeat().batch(BATCH, drop_remainder=True).map(masker))
"""),
    ("code", """
keras.utils.set_random_seed(0)
shape = dict(vocab_size=128100, hidden_size=64, num_attention_heads=4, intermediate_size=128,
             relative_attention=True, position_buckets=64, norm_rel_ebd="layer_norm", share_att_key=True,
             pos_att_type="p2c|c2p", position_biased_input=False, max_position_embeddings=512)
generator = kd.TFDebertaV2ForMaskedLM(kd.DebertaV2Config(**shape, num_hidden_layers=2, enhanced_mask_decoder=True))
discriminator = kd.TFDebertaV2ForReplacedTokenDetection(kd.DebertaV2Config(**shape, num_hidden_layers=4))
pretrainer = kd.DebertaV3RTDPretrainer(generator=generator, discriminator=discriminator, rtd_lambda=50.0,
                                       embedding_sharing="gdes", seed=0, max_predictions_per_seq=6)
pretrainer.compile(generator_optimizer=keras.optimizers.AdamW(2e-3),
                   discriminator_optimizer=keras.optimizers.AdamW(2e-3))
history = pretrainer.fit(data, steps_per_epoch=STEPS // 4, epochs=4, verbose=2)
"""),
    ("code", """
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(8, 3))
for ax, name in zip(axes, ("mlm_loss", "rtd_loss")):
    ax.plot(history.history[name], marker="o")
    ax.set_title(name); ax.set_xlabel(f"epoch ({STEPS // 4} steps)")
plt.tight_layout()
"""),
    ("code", """
# What the discriminator sees and says: the generator's samples replace the masked tokens.
batch = next(iter(data))
out = pretrainer({k: batch[k].numpy() for k in ("input_ids", "attention_mask", "labels")})
row = 0
corrupted = keras.ops.convert_to_numpy(out["corrupted_ids"])[row]
p_replaced = 1 / (1 + np.exp(-keras.ops.convert_to_numpy(out["rtd_logits"])[row]))
replaced = (batch["labels"].numpy()[row] != -100) & (corrupted != batch["labels"].numpy()[row])
for token, p, r in zip(tokenizer.convert_ids_to_tokens(corrupted.tolist()), p_replaced, replaced):
    if token != "[PAD]":
        print(f"{token:>14s}  p(replaced) {p:.2f}{'   <- replaced' if r else ''}")
"""),
    ("code", """
# Both models save as transformers checkpoints; the GDES delta is folded into the discriminator.
import tempfile
out_dir = tempfile.mkdtemp()
pretrainer.discriminator.save_pretrained(os.path.join(out_dir, "discriminator"))
pretrainer.generator.save_pretrained(os.path.join(out_dir, "generator"))
reloaded = kd.TFDebertaV2ForReplacedTokenDetection.from_pretrained(os.path.join(out_dir, "discriminator"))
print(sorted(n for n in reloaded.hf_weight_specs() if n.startswith("mask_predictions")))
# transformers.DebertaV2Model.from_pretrained("rtd_discriminator") loads the encoder (it ignores the
# RTD head, as for the Hub's v3 files); our from_pretrained of a Hub v3 checkpoint keeps it.
"""),
])


def main():
    for name, nb in {"finetune_text_classification.ipynb": FINETUNE, "question_answering.ipynb": QA,
                     "deepseek_generation.ipynb": DEEPSEEK, "export_and_serve.ipynb": EXPORT,
                     "pretrain_rtd.ipynb": RTD}.items():
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        print("wrote", name)


if __name__ == "__main__":
    main()

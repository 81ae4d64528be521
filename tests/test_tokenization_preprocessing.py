"""In-graph preprocessing layers: equal to the Python tokenizers, in tf.data on every backend and
inside an exported SavedModel.

One documented difference, asserted strictly: tf-text's bundled SentencePiece breaks exact Viterbi
ties differently from the `sentencepiece` package (same pieces in another order, same text, same
score). Every differing row must be such a tie; anything else fails.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest

import tokenizer_cases as cases

pytestmark = pytest.mark.skipif(
    not (os.path.isfile(cases.SPM_V3) and os.path.isdir(cases.GPT2_DIR)), reason="needs ../shared/data vocabularies")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_text")
pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def v2_tok(tmp_path_factory):
    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

    d = tmp_path_factory.mktemp("v3")
    shutil.copy(cases.SPM_V3, d / "spm.model")
    return DebertaV2Tokenizer.from_pretrained(str(d))


@pytest.fixture(scope="module")
def v1_tok(tmp_path_factory):
    from keras_deberta.tokenization_deberta import DebertaTokenizer

    d = tmp_path_factory.mktemp("deberta_layout")
    with open(os.path.join(cases.GPT2_DIR, "encoder.json"), encoding="utf-8") as f:
        gpt2 = json.load(f)
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({tok: i + 4 for tok, i in gpt2.items()})
    vocab["[MASK]"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copy(os.path.join(cases.GPT2_DIR, "vocab.bpe"), d / "merges.txt")
    return DebertaTokenizer.from_pretrained(str(d))


@pytest.fixture(scope="module")
def v1_layer(v1_tok):
    """One v1 layer for the module: building and tracing keras-hub's BPE graph takes seconds."""
    from keras_deberta.preprocessing import DebertaPreprocessor

    return DebertaPreprocessor(v1_tok, sequence_length=48, truncation="only_first")


def _is_tie(tok, got, want):
    a, b = [int(i) for i in got], [int(i) for i in want]
    return sorted(a) == sorted(b) and "".join(tok.convert_ids_to_tokens(a)) == "".join(tok.convert_ids_to_tokens(b))


def _compare(tok, layer_out, ref, texts, allow_ties):
    """Every output equal to the Python tokenizer's; differing id rows must be exact ties."""
    ties = 0
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        got = np.asarray(keras.ops.convert_to_numpy(layer_out[key]))
        assert got.shape == ref[key].shape, key
        for r in np.where((got != ref[key]).any(axis=1))[0]:
            assert key == "input_ids" and allow_ties and _is_tie(tok, got[r], ref[key][r]), (key, texts[r])
            ties += 1
    return ties


def _dataset_batches(layer, texts, batch_size=512, pairs=None):
    ds = tf.data.Dataset.from_tensor_slices(texts if pairs is None else (texts, pairs)).batch(batch_size)
    ds = ds.map(lambda *x: layer(x[0]) if pairs is None else layer((x[0], x[1])))
    return list(ds.as_numpy_iterator())


def test_v2_layer_equals_python_on_corpora_in_tf_data(v2_tok):
    from keras_deberta.preprocessing import DebertaV2Preprocessor

    texts = cases.all_texts() + cases.HARD_CASES
    layer = DebertaV2Preprocessor(v2_tok)  # dynamic length: each batch padded to its longest row
    ties = 0
    for start, out in zip(range(0, len(texts), 512), _dataset_batches(layer, texts)):
        chunk = texts[start:start + 512]
        ties += _compare(v2_tok, out, v2_tok(chunk, padding=True, return_tensors="np"), chunk, allow_ties=True)
    print(f"tf-text SentencePiece broke {ties} exact ties differently in {len(texts)} texts")
    assert ties < 20


def test_v2_layer_lower_cases_as_the_python_tokenizer():
    """do_lower_case (the built-in sst2-tiny classifier's tokenizer): text is lower-cased in the
    graph after special tokens are split off, as the Python tokenizer does."""
    from keras_deberta.preprocessing import DebertaV2Preprocessor
    from keras_deberta.tokenization_deberta_v2 import DebertaV2Tokenizer

    tok = DebertaV2Tokenizer(cases.SPM_V3, do_lower_case=True)
    texts = cases.all_texts() + cases.HARD_CASES + ["THE [MASK] Sat", "ÉCOLE Ärger ΣΟΦΙΑ İstanbul", "[CLS]X[SEP]"]
    assert tok("The [MASK]")["input_ids"] == tok("the [MASK]")["input_ids"] != tok("the [mask]")["input_ids"]
    layer = DebertaV2Preprocessor(tok)
    ties = 0
    for start, out in zip(range(0, len(texts), 512), _dataset_batches(layer, texts)):
        chunk = texts[start:start + 512]
        ties += _compare(tok, out, tok(chunk, padding=True, return_tensors="np"), chunk, allow_ties=True)
    assert ties < 20


@pytest.mark.parametrize("truncation", ["longest_first", "only_second"])
def test_v2_layer_pairs_fixed_length(v2_tok, truncation):
    from keras_deberta.preprocessing import DebertaV2Preprocessor

    contexts, questions = cases.xquad()
    qs = questions[:200]
    cs = [contexts[i % len(contexts)] for i in range(len(qs))]
    layer = DebertaV2Preprocessor(v2_tok, sequence_length=64, truncation=truncation)
    out = _dataset_batches(layer, qs, batch_size=200, pairs=cs)[0]
    ref = v2_tok(qs, cs, truncation=truncation, max_length=64, padding="max_length", return_tensors="np")
    _compare(v2_tok, out, ref, qs, allow_ties=True)


def _check_v1_layer(v1_tok, v1_layer, texts):
    for start, out in zip(range(0, len(texts), 512), _dataset_batches(v1_layer, texts)):
        chunk = texts[start:start + 512]
        ref = v1_tok(chunk, truncation=True, max_length=48, padding="max_length", return_tensors="np")
        _compare(v1_tok, out, ref, chunk, allow_ties=False)


def test_v1_layer_equals_python_in_tf_data(v1_tok, v1_layer):
    # SST-2 dev and the hard cases here; every corpus in the slow test below (keras-hub's BPE runs
    # a graph while-loop per new word: the full corpora take ~20 s more per backend).
    _check_v1_layer(v1_tok, v1_layer, cases.sst2_dev() + cases.HARD_CASES)
    a = [x for x, _ in cases.PAIR_CASES]
    b = [y for _, y in cases.PAIR_CASES]
    ref = v1_tok(a, b, truncation="only_first", max_length=48, padding="max_length", return_tensors="np")
    _compare(v1_tok, _dataset_batches(v1_layer, a, pairs=b)[0], ref, a, allow_ties=False)


@pytest.mark.slow
def test_v1_layer_equals_python_on_full_corpora(v1_tok, v1_layer):
    _check_v1_layer(v1_tok, v1_layer, cases.all_texts())


def test_eager_calls_single_and_pairs(v2_tok):
    from keras_deberta.preprocessing import DebertaV2Preprocessor

    layer = DebertaV2Preprocessor(v2_tok, sequence_length=12)
    out = layer(["The capital of France is [MASK].", "x"])
    assert keras.backend.standardize_dtype(out["input_ids"].dtype) == "int32"
    ref = v2_tok(["The capital of France is [MASK].", "x"], padding="max_length", max_length=12,
                 truncation=True, return_tensors="np")
    _compare(v2_tok, out, ref, ["", ""], allow_ties=False)
    single = layer("Hello [MASK] world")
    assert tuple(single["input_ids"].shape) == (12,)
    assert keras.ops.convert_to_numpy(single["input_ids"])[:5].tolist() == [1, 5365, 128000, 447, 2]
    pair = layer(("a b c", "d e"))
    expected = v2_tok("a b c", "d e", padding="max_length", max_length=12)["token_type_ids"]
    assert keras.ops.convert_to_numpy(pair["token_type_ids"]).tolist() == expected
    with pytest.raises(ValueError, match="special tokens"):
        DebertaV2Preprocessor(v2_tok, sequence_length=2)((["a"], ["b"]))
    with pytest.raises(Exception):  # tf's InvalidArgumentError: "Sequence to truncate too short ..."
        DebertaV2Preprocessor(v2_tok, sequence_length=5, truncation="only_first")((["a"], ["b c d e f"]))


def test_saved_model_export(v2_tok, v1_layer, tmp_path):
    from keras_deberta.preprocessing import DebertaV2Preprocessor, serving_module

    texts = ["Hello [MASK] world", "caf\u00e9 \U0001F600 Ầ", "", "a  b\tc"]
    layers = [("v2", DebertaV2Preprocessor(v2_tok, sequence_length=16))]
    if os.environ.get("RUN_SLOW") == "1":  # keras-hub's BPE graph takes ~15 s to save and load
        layers.append(("v1", v1_layer))
    for name, layer in layers:
        path = str(tmp_path / name)
        tf.saved_model.save(serving_module(layer), path)
        served = tf.saved_model.load(path).serve(tf.constant(texts))
        n = layer.sequence_length
        ref = layer.tokenizer(texts, padding="max_length", max_length=n, truncation=True, return_tensors="np")
        _compare(layer.tokenizer, {k: v.numpy() for k, v in served.items()}, ref, texts, allow_ties=False)


@pytest.mark.slow
def test_v1_layer_add_prefix_space(tmp_path):
    from keras_deberta.preprocessing import DebertaPreprocessor
    from keras_deberta.tokenization_deberta import DebertaTokenizer

    shutil.copy(os.path.join(cases.GPT2_DIR, "encoder.json"), tmp_path / "vocab.json")
    shutil.copy(os.path.join(cases.GPT2_DIR, "vocab.bpe"), tmp_path / "merges.txt")
    tok = DebertaTokenizer.from_pretrained(str(tmp_path), add_prefix_space=True)
    texts = cases.sst2_dev()[:300] + cases.HARD_CASES
    out = _dataset_batches(DebertaPreprocessor(tok), texts, batch_size=len(texts))[0]
    _compare(tok, out, tok(texts, padding=True, return_tensors="np"), texts, allow_ties=False)

"""DeepseekV2Tokenizer equals transformers' AutoTokenizer on a DeepSeek-style tokenizer.json.

The test trains a small byte-level BPE with the `tokenizers` library in the layout DeepSeek-V2
checkpoints ship: DeepSeek's Split-regex + ByteLevel pre-tokenizer, ByteLevel decoder, the special
tokens added after the BPE vocabulary, a `bos $A` TemplateProcessing post-processor, and a
tokenizer_config.json naming LlamaTokenizerFast with add_bos_token, a pad token and a chat template.
Real text: tinyshakespeare (skipped without ../shared/data). The builders here are shared with the
pipeline and CLI tests.
"""

import json
import os

import numpy as np
import pytest

from conftest import SHARED_DATA

SHAKESPEARE = os.path.join(SHARED_DATA, "lm", "tinyshakespeare", "input.txt")
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
# DeepSeek-V2-Chat's template shape: bos, "User: ...\n\n", "Assistant: ...<eos>", a generation prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
# A corpus for tests that need a tokenizer but not real text.
SMALL_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Keras models run on TensorFlow, JAX and PyTorch alike.",
    "Multi-head latent attention caches 576 values per token per layer!",
    "Mixture of experts: shared experts are always on; routed ones are chosen per token.",
    "Who art thou? I am a tokenizer, trained in 2026 on a handful of lines.",
] * 4


def _added(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def build_deepseek_like_tokenizer(directory, lines, vocab_size=320):
    """Trains a DeepSeek-layout byte-level BPE on `lines` and writes tokenizer.json +
    tokenizer_config.json into `directory`. Returns the `tokenizers.Tokenizer`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    split = lambda pattern: pre_tokenizers.Split(Regex(pattern), "isolated")  # noqa: E731
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        split(r"[\r\n]"),
        split(r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓ]+"),
        split(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"),
        split(r"\s+$"),
        split(r"[一-龥ࠀ-一가-퟿]+"),
        split(r"\p{N}+"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    # As in DeepSeek's file: the special tokens come after the BPE vocabulary.
    tok.add_special_tokens([AddedToken(BOS, special=True, normalized=False),
                            AddedToken(EOS, special=True, normalized=False)])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)])
    os.makedirs(directory, exist_ok=True)
    tok.save(os.path.join(directory, "tokenizer.json"))
    config = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": _added(BOS), "eos_token": _added(EOS),
        "pad_token": _added(EOS), "unk_token": None, "clean_up_tokenization_spaces": False, "legacy": True,
        "model_max_length": 16384, "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    return tok


def write_tiny_checkpoint(directory, lines=SMALL_CORPUS, seed=3):
    """A tokenizer (as above) and a tiny perturbed transformers DeepseekV2ForCausalLM whose vocab,
    bos, eos and pad ids match it, saved together. Returns (hf_model, hf_tokenizer)."""
    import transformers
    from deepseek_reference import build_hf_model, hf_config

    tok = build_deepseek_like_tokenizer(directory, lines)
    config = hf_config("lite", vocab_size=tok.get_vocab_size(), bos_token_id=tok.token_to_id(BOS),
                       eos_token_id=tok.token_to_id(EOS), pad_token_id=tok.token_to_id(EOS))
    hf_model = build_hf_model(config, seed=seed)
    hf_model.save_pretrained(directory)
    return hf_model, transformers.AutoTokenizer.from_pretrained(directory)


_CHECKPOINTS = {}


def shared_tiny_checkpoint(tmp_path_factory):
    """write_tiny_checkpoint once per test session (the pipeline and CLI tests share it; neither
    writes into it). Returns (directory, hf_model, hf_tokenizer)."""
    if "tiny" not in _CHECKPOINTS:
        directory = str(tmp_path_factory.mktemp("deepseek_tiny_ckpt"))
        _CHECKPOINTS["tiny"] = (directory, *write_tiny_checkpoint(directory))
    return _CHECKPOINTS["tiny"]


# --- tokenizer tests ------------------------------------------------------------------------------
needs_text = pytest.mark.skipif(not os.path.isfile(SHAKESPEARE), reason="needs ../shared/data/lm/tinyshakespeare")


@pytest.fixture(scope="module")
def lines():
    with open(SHAKESPEARE, encoding="utf-8") as f:
        text = f.read().splitlines()
    return text


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory, lines):
    directory = str(tmp_path_factory.mktemp("deepseek_tok"))
    build_deepseek_like_tokenizer(directory, lines[:8000], vocab_size=400)
    return directory


@pytest.fixture(scope="module")
def pair(tokenizers_dir):
    import transformers

    from keras_deepseek import DeepseekV2Tokenizer

    hf = transformers.AutoTokenizer.from_pretrained(tokenizers_dir)
    return hf, DeepseekV2Tokenizer.from_pretrained(tokenizers_dir)


@pytest.fixture(scope="module")
def sample(lines):
    # Lines the tokenizer was not trained on, blank lines included, plus hand-made hard cases.
    picked = lines[20000:20300]
    return picked + ["", "   ", "Hello  world 12345 ｜ 你好 \n\n tail  ", f"{BOS}Speak.{EOS} more",
                     "naïve café — “quoted” ☃ 🙂", "\t tabs\tand  spaces  "]


@needs_text
def test_ids_and_left_padded_masks_match_transformers(pair, sample):
    hf, ours = pair
    ref = hf(sample, padding=True, padding_side="left", return_tensors="np")
    got = ours(sample, padding=True, return_tensors="np")
    assert ours.padding_side == "left"
    np.testing.assert_array_equal(got["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"])
    # Unpadded lists, one text at a time and the whole batch.
    assert ours(sample)["input_ids"] == hf(sample)["input_ids"]
    for text in sample[:40] + sample[-6:]:
        assert ours.encode(text) == hf.encode(text), text
        assert ours(text)["input_ids"] == hf(text)["input_ids"]
        assert ours.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False)
    assert ours.encode("")[0] == hf.bos_token_id == ours.bos_token_id  # the post-processor adds bos


@needs_text
def test_right_padding_truncation_and_max_length_padding_match(pair, sample):
    hf, ours = pair
    for side in ("left", "right"):
        for kwargs in (dict(padding="max_length", truncation=True, max_length=12),
                       dict(padding=True, truncation=True, max_length=7),
                       dict(padding=True, pad_to_multiple_of=8)):
            ref = hf(sample[:50], padding_side=side, return_tensors="np", **kwargs)
            got = ours(sample[:50], padding_side=side, return_tensors="np", **kwargs)
            np.testing.assert_array_equal(got["input_ids"], ref["input_ids"], err_msg=f"{side} {kwargs}")
            np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"], err_msg=f"{side} {kwargs}")


@needs_text
def test_decode_and_batch_decode_match_transformers(pair, sample):
    hf, ours = pair
    ids = hf(sample, padding=True, padding_side="left", return_tensors="np")["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)
        for row in list(ids[:20]) + list(ids[-6:]):
            assert ours.decode(row, skip_special_tokens=skip) == hf.decode(row, skip_special_tokens=skip)
    # Byte-level BPE is lossless: text -> ids -> text gives the text back.
    for text in sample:
        assert ours.decode(ours.encode(text, add_special_tokens=False)) == text
    assert ours.decode(int(ids[0, -1])) == hf.decode(int(ids[0, -1]))


@needs_text
def test_chat_template_matches_transformers(pair):
    hf, ours = pair
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who art thou?"},
            {"role": "assistant", "content": "A humble servant."}, {"role": "user", "content": "Speak again."}]
    for gen_prompt in (True, False):
        text = ours.apply_chat_template(chat, add_generation_prompt=gen_prompt, tokenize=False)
        assert text == hf.apply_chat_template(chat, add_generation_prompt=gen_prompt, tokenize=False)
        assert ours.apply_chat_template(chat, add_generation_prompt=gen_prompt)["input_ids"] == \
            hf.apply_chat_template(chat, add_generation_prompt=gen_prompt)["input_ids"]
    prefill = chat[:2] + [{"role": "assistant", "content": "I am"}]
    assert ours.apply_chat_template(prefill, continue_final_message=True, tokenize=False) == \
        hf.apply_chat_template(prefill, continue_final_message=True, tokenize=False)
    batch = [chat[:2], chat]
    assert ours.apply_chat_template(batch, add_generation_prompt=True, tokenize=False) == \
        hf.apply_chat_template(batch, add_generation_prompt=True, tokenize=False)


def test_chat_template_is_sandboxed(tmp_path):
    from keras_deepseek import DeepseekV2Tokenizer

    build_deepseek_like_tokenizer(str(tmp_path), SMALL_CORPUS)
    tok = DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ValueError, match="chat template failed"):
        tok.apply_chat_template([{"role": "user", "content": "x"}], chat_template=escape, tokenize=False)
    mutate = "{% set _ = messages.append({'role': 'user', 'content': 'injected'}) %}{{ messages | length }}"
    with pytest.raises(ValueError, match="chat template failed"):
        tok.apply_chat_template([{"role": "user", "content": "x"}], chat_template=mutate, tokenize=False)


@needs_text
def test_save_pretrained_round_trip_loads_in_both(pair, sample, tmp_path):
    import transformers

    from keras_deepseek import DeepseekV2Tokenizer

    hf, ours = pair
    written = ours.save_pretrained(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in written)  # no temp files left
    again = DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    hf_again = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ref = hf(sample, padding=True, padding_side="left")["input_ids"]
    assert again(sample, padding=True)["input_ids"] == ref
    assert hf_again(sample, padding=True, padding_side="left")["input_ids"] == ref
    assert again.chat_template == ours.chat_template and again.pad_token == EOS


def test_tokenizer_json_post_processor_decides_bos_as_in_transformers(tmp_path):
    """transformers 5 ignores tokenizer_config's add_bos_token when tokenizer.json exists: a file
    whose post-processor adds nothing gives no bos. An explicit keyword still turns it on."""
    import transformers

    from keras_deepseek import DeepseekV2Tokenizer

    build_deepseek_like_tokenizer(str(tmp_path), SMALL_CORPUS)
    path = tmp_path / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    text = "The lazy dog."
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))(text)["input_ids"]
    ours = DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    assert ours(text)["input_ids"] == ref and ref[0] != ours.bos_token_id
    assert not ours.add_bos_token
    forced = DeepseekV2Tokenizer.from_pretrained(str(tmp_path), add_bos_token=True)
    assert forced(text)["input_ids"] == [forced.bos_token_id] + ref


def test_bad_tokenizer_files_and_inputs(tmp_path):
    from keras_deepseek import DeepseekV2Tokenizer
    from keras_deepseek.tokenization_deepseek_v2 import TokenizerFileError

    with pytest.raises(TokenizerFileError, match="no tokenizer.json"):
        DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="not a valid tokenizers file"):
        DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    good = tmp_path / "good"
    build_deepseek_like_tokenizer(str(good), SMALL_CORPUS)
    tok = DeepseekV2Tokenizer.from_pretrained(str(good))
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a longer text"], return_tensors="np")
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="mlx")
    with pytest.raises(TypeError, match="list holding int"):
        tok(["a", 3])
    with pytest.raises(ValueError, match="padding_side"):
        tok(["a"], padding=True, padding_side="middle")
    tok.pad_token = None
    with pytest.raises(ValueError, match="no pad_token"):
        tok(["a", "bb"], padding=True)


def test_model_max_length_from_tokenizer_config_else_config_json(tmp_path):
    """The input limit: tokenizer_config.json's, else the model's max_position_embeddings."""
    from keras_deepseek.tokenization_deepseek_v2 import DeepseekV2Tokenizer
    from presets.tokenizer_types import BatchEncoding

    build_deepseek_like_tokenizer(str(tmp_path), SMALL_CORPUS)
    assert DeepseekV2Tokenizer.from_pretrained(str(tmp_path)).model_max_length == 16384  # tokenizer_config's
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del config["model_max_length"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert DeepseekV2Tokenizer.from_pretrained(str(tmp_path)).model_max_length == int(1e30)  # none anywhere
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deepseek_v2", "max_position_embeddings": 40}))
    tok = DeepseekV2Tokenizer.from_pretrained(str(tmp_path))
    assert tok.model_max_length == 40
    enc = tok(" ".join(SMALL_CORPUS), truncation=True)
    assert len(enc["input_ids"]) == 40 and isinstance(enc, BatchEncoding)  # the type both families return

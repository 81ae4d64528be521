"""The transformers API a user meets first, against transformers itself: generate(max_length=,
return_dict_in_generate=, output_scores=), pipeline(..., device=), the TFAuto* / AutoConfig /
AutoTokenizer classes over both families, num_parameters(), __version__."""

import os
import tomllib

import keras
import numpy as np
import pytest

import keras_deberta as kd
import keras_deepseek as ks
from deepseek_reference import build_hf_model, hf_config
from harness import tiny_config, to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def deepseek(tmp_path_factory):
    hf_model = build_hf_model(hf_config("lite"), seed=7)
    directory = str(tmp_path_factory.mktemp("deepseek"))
    hf_model.save_pretrained(directory)
    return hf_model, ks.TFDeepseekV2ForCausalLM.from_pretrained(directory)


@pytest.fixture(scope="module")
def prompts():
    return np.random.RandomState(11).randint(3, 97, size=(2, 6)).astype("int32")


def _hf_generate(hf_model, prompts, **kwargs):
    import torch

    return hf_model.generate(torch.tensor(prompts, dtype=torch.long), attention_mask=torch.ones(prompts.shape,
                             dtype=torch.long), eos_token_id=None, pad_token_id=0, return_dict_in_generate=True,
                             output_scores=True, **kwargs)


def test_generate_max_length_and_greedy_scores_equal_transformers(deepseek, prompts):
    hf_model, model = deepseek
    want = _hf_generate(hf_model, prompts, max_length=10, do_sample=False)
    got = model.generate(prompts, max_length=10, eos_token_id=None, return_dict_in_generate=True, output_scores=True)
    np.testing.assert_array_equal(to_numpy(got.sequences), want.sequences.numpy())
    assert len(got.scores) == len(want.scores) == 4
    for ours, theirs in zip(got.scores, want.scores):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5)
    plain = model.generate(prompts, max_length=10, eos_token_id=None)  # without the dict: the tensor
    np.testing.assert_array_equal(to_numpy(plain), want.sequences.numpy())
    assert model.generate(prompts, max_new_tokens=2, max_length=10, eos_token_id=None).shape == (2, 8)  # as HF
    with pytest.raises(ValueError, match="max_length"):
        model.generate(prompts, max_length=6)


def test_sampled_scores_are_transformers_processed_scores(deepseek, prompts):
    """The first step's scores (same logits on both sides) after temperature, top-k and top-p."""
    hf_model, model = deepseek
    settings = dict(do_sample=True, temperature=0.7, top_k=7, top_p=0.8)
    want = _hf_generate(hf_model, prompts, max_new_tokens=1, **settings).scores[0].numpy()
    got = model.generate(prompts, max_new_tokens=1, eos_token_id=None, seed=0, return_dict_in_generate=True,
                         output_scores=True, **settings).scores[0]
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    kept = ~np.isinf(want)
    assert 1 <= kept.sum(axis=1).min() and kept.sum(axis=1).max() <= 7
    np.testing.assert_allclose(got[kept], want[kept], atol=1e-5)


def test_uncached_generate_then_cached_calls_share_one_lru(tmp_path, prompts):
    """generate(use_cache=False) first used to create the function cache as a plain dict, and the
    next cached call of an already-compiled shape failed on `move_to_end`."""
    model = ks.TFDeepseekV2ForCausalLM(tiny_config(ks.TFDeepseekV2ForCausalLM))
    other = prompts[::-1].copy()  # the same length: the same compiled functions
    full = [to_numpy(model.generate(p, max_new_tokens=4, eos_token_id=None, use_cache=False)) for p in (prompts, other)]
    for _ in range(2):  # the second round finds the compiled prefill and decode in the LRU
        np.testing.assert_array_equal(to_numpy(model.generate(prompts, max_new_tokens=4, eos_token_id=None)), full[0])
        np.testing.assert_array_equal(to_numpy(model.generate(other, max_new_tokens=4, eos_token_id=None)), full[1])


def test_pipelines_accept_transformers_device(tmp_path):
    texts = ["A delight from start to finish.", "Tedious, overlong and joyless."]
    plain = kd.pipeline("sentiment-analysis")(texts)
    for device in (-1, "cpu"):
        assert kd.pipeline("sentiment-analysis", device=device)(texts) == plain
    with pytest.raises(ValueError, match="device="):
        kd.pipeline("sentiment-analysis", device="tpu-ish")


def test_text_generation_pipeline_accepts_device(tmp_path_factory):
    from test_deepseek_tokenizer import shared_tiny_checkpoint

    directory, _, _ = shared_tiny_checkpoint(tmp_path_factory)
    options = dict(max_new_tokens=3, do_sample=False)
    want = ks.pipeline("text-generation", model=directory, **options)("Keras models")
    assert ks.pipeline("text-generation", model=directory, device="cpu", **options)("Keras models") == want
    with pytest.raises(ValueError, match="device="):
        ks.pipeline("text-generation", model=directory, device="npu:0")


AUTO_CASES = [
    (kd.TFAutoModel, kd.TFDebertaV2Model), (kd.TFAutoModelForSequenceClassification, kd.TFDebertaForSequenceClassification),
    (kd.TFAutoModelForTokenClassification, kd.TFDebertaV2ForTokenClassification),
    (kd.TFAutoModelForQuestionAnswering, kd.TFDebertaForQuestionAnswering),
    (kd.TFAutoModelForMaskedLM, kd.TFDebertaV2ForMaskedLM), (kd.TFAutoModelForMultipleChoice, kd.TFDebertaV2ForMultipleChoice),
    (ks.TFAutoModelForCausalLM, ks.TFDeepseekV2ForCausalLM), (ks.TFAutoModel, ks.TFDeepseekV2Model),
]


@pytest.mark.parametrize("auto, cls", AUTO_CASES, ids=lambda c: c.__name__)
def test_auto_model_classes_dispatch_on_model_type(auto, cls, tmp_path):
    model = cls(tiny_config(cls))
    model.save_pretrained(str(tmp_path))
    loaded = auto.from_pretrained(str(tmp_path))
    assert type(loaded) is cls
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert type(kd.AutoConfig.from_pretrained(str(tmp_path))) is cls.config_class
    assert type(auto.from_config(model.config)) is cls


def test_auto_classes_are_shared_and_refuse_what_no_family_has(tmp_path):
    assert kd.TFAutoModel is ks.TFAutoModel and kd.AutoTokenizer is ks.AutoTokenizer
    ks.TFDeepseekV2ForCausalLM(tiny_config(ks.TFDeepseekV2ForCausalLM)).save_pretrained(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="'deepseek_v2' has no masked-lm model"):
        kd.TFAutoModelForMaskedLM.from_pretrained(str(tmp_path / "ds"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="unrecognised model_type 'bert'"):
        kd.AutoConfig.from_pretrained(str(tmp_path / "bert"))
    assert type(kd.AutoConfig.for_model("deberta-v2", hidden_size=32)) is kd.DebertaV2Config


def test_auto_tokenizer_picks_each_family(tmp_path):
    import tokenizer_cases as cases
    import tokenizer_reference as ref
    from test_deepseek_tokenizer import SMALL_CORPUS, build_deepseek_like_tokenizer

    build_deepseek_like_tokenizer(str(tmp_path / "ds"), SMALL_CORPUS)  # tokenizer_class only, no config.json
    assert type(kd.AutoTokenizer.from_pretrained(str(tmp_path / "ds"))) is ks.DeepseekV2Tokenizer
    if not os.path.isfile(cases.SPM_V3):
        pytest.skip("needs ../shared/data/vocab/deberta-v3")
    ref.write_v3_dir(tmp_path / "v3")
    kd.DebertaV2Config(vocab_size=128100).save_pretrained(str(tmp_path / "v3"))
    tok = ks.AutoTokenizer.from_pretrained(str(tmp_path / "v3"))
    assert type(tok) is kd.DebertaV2Tokenizer
    assert tok("Hello world")["input_ids"] == transformers.AutoTokenizer.from_pretrained(
        str(tmp_path / "v3"))("Hello world")["input_ids"]


@pytest.mark.parametrize("cls, hf_name", [(kd.TFDebertaV2ForMaskedLM, "DebertaV2ForMaskedLM"),
                                          (kd.TFDebertaForSequenceClassification, "DebertaForSequenceClassification"),
                                          (ks.TFDeepseekV2ForCausalLM, "DeepseekV2ForCausalLM")],
                         ids=lambda c: getattr(c, "__name__", c))
def test_num_parameters_equals_transformers(cls, hf_name, tmp_path):
    model = cls(tiny_config(cls))
    model.save_pretrained(str(tmp_path))
    theirs = getattr(transformers, hf_name).from_pretrained(str(tmp_path))
    for exclude in (False, True):
        assert model.num_parameters(exclude_embeddings=exclude) == theirs.num_parameters(exclude_embeddings=exclude)
    model.trainable = False
    assert model.num_parameters(only_trainable=True) == 0


def test_version_is_the_distributions():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert kd.__version__ == ks.__version__ == version
    assert keras.__version__  # the same attribute name users read on every package

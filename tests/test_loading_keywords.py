"""transformers' loading keywords on every `from_pretrained` (models, configs, tokenizers): they reach
the Hub download, none is ever written by a later `save_pretrained` (a Hub token must never land in
a saved checkpoint), and a keyword that is neither one of them nor a config field is refused."""

import json
import os

import pytest

import keras_deberta as kd
import keras_deepseek as ks
import tokenizer_cases as cases
import tokenizer_reference as ref
from harness import tiny_config

SECRET = "hf_NotARealTokenButSecret"
# Every keyword with a value that a loader must not confuse with a config field.
LOADING = dict(token=SECRET, use_auth_token=SECRET, cache_dir="/nonexistent/hf-cache", revision="main",
               local_files_only=True, force_download=False, from_pt=True, from_tf=False, use_safetensors=True,
               trust_remote_code=True)
NAMES = set(LOADING) | {"subfolder"}


def _assert_nothing_of_the_loading_on_disk(directory):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if not name.endswith(".json"):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert SECRET not in text, f"the Hub token was written into {name}"
        if name in ("vocab.json", "tokenizer.json", "added_tokens.json"):  # tokens, not settings
            continue
        written = set(json.loads(text)) & NAMES
        assert not written, f"{name} stores loading keywords {sorted(written)}"


def _checkpoint(cls, root):
    """A tiny random checkpoint saved in root/sub (loaded below with subfolder="sub")."""
    cls(tiny_config(cls)).save_pretrained(os.path.join(root, "sub"))
    return str(root)


@pytest.mark.filterwarnings("ignore:trust_remote_code")
@pytest.mark.parametrize("cls", [kd.TFDebertaV2ForSequenceClassification, ks.TFDeepseekV2ForCausalLM],
                         ids=lambda c: c.__name__)
def test_model_and_config_keep_no_loading_keyword(cls, tmp_path):
    root = _checkpoint(cls, tmp_path / "ckpt")
    model = cls.from_pretrained(root, subfolder="sub", **LOADING)
    model.save_pretrained(str(tmp_path / "model_out"))
    _assert_nothing_of_the_loading_on_disk(str(tmp_path / "model_out"))
    config = cls.config_class.from_pretrained(root, subfolder="sub", **LOADING)
    config.save_pretrained(str(tmp_path / "config_out"))
    _assert_nothing_of_the_loading_on_disk(str(tmp_path / "config_out"))


def test_trust_remote_code_says_in_one_line_that_nothing_runs(tmp_path):
    root = _checkpoint(kd.TFDebertaV2Model, tmp_path)
    with pytest.warns(UserWarning, match="no code from a checkpoint is ever run"):
        kd.DebertaV2Config.from_pretrained(root, subfolder="sub", trust_remote_code=True)


@pytest.mark.parametrize("cls", [kd.TFDebertaV2Model, ks.TFDeepseekV2Model], ids=lambda c: c.__name__)
def test_unknown_keywords_raise_a_type_error_naming_them(cls, tmp_path):
    root = _checkpoint(cls, tmp_path)
    with pytest.raises(TypeError, match="'hidden_sise'.*'not_an_option'"):
        cls.from_pretrained(root, subfolder="sub", not_an_option=1, hidden_sise=8)
    with pytest.raises(TypeError, match="'hidden_sise'"):
        cls.config_class.from_pretrained(root, subfolder="sub", hidden_sise=8)
    # config fields still override, as in transformers
    assert cls.config_class.from_pretrained(root, subfolder="sub", output_hidden_states=True).output_hidden_states


@pytest.mark.parametrize("kind", ["v2", "v1", "deepseek"])
@pytest.mark.filterwarnings("ignore:trust_remote_code")
def test_tokenizers_keep_no_loading_keyword(kind, tmp_path):
    from test_deepseek_tokenizer import SMALL_CORPUS, build_deepseek_like_tokenizer

    sub = tmp_path / "ckpt" / "sub"
    if kind == "deepseek":
        build_deepseek_like_tokenizer(str(sub), SMALL_CORPUS)
        cls = ks.DeepseekV2Tokenizer
    else:
        if not (os.path.isfile(cases.SPM_V3) and os.path.isdir(cases.GPT2_DIR)):
            pytest.skip("needs ../shared/data/vocab (deberta-v3 spm.model and gpt2)")
        (ref.write_v3_dir if kind == "v2" else ref.write_deberta_layout_dir)(sub)
        cls = kd.DebertaV2Tokenizer if kind == "v2" else kd.DebertaTokenizer
    tok = cls.from_pretrained(str(tmp_path / "ckpt"), subfolder="sub", **LOADING)
    assert tok("a test")["input_ids"]
    tok.save_pretrained(str(tmp_path / "out"))
    _assert_nothing_of_the_loading_on_disk(str(tmp_path / "out"))


def test_hub_download_receives_the_keywords(tmp_path, monkeypatch):
    """A Hub id goes through huggingface_hub.snapshot_download with transformers' keywords
    (replaced here by a stand-in that returns a local snapshot: no network)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    root = _checkpoint(kd.TFDebertaV2Model, tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return root

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = kd.TFDebertaV2Model.from_pretrained("someone/private-deberta", token=SECRET, cache_dir=str(tmp_path),
                                                revision="v1.0", local_files_only=True, force_download=True,
                                                subfolder="sub")
    assert model.config.hidden_size == tiny_config(kd.TFDebertaV2Model).hidden_size
    repo_id, kwargs = calls[0]
    assert repo_id == "someone/private-deberta"
    assert {k: kwargs[k] for k in ("token", "cache_dir", "revision", "local_files_only", "force_download")} == dict(
        token=SECRET, cache_dir=str(tmp_path), revision="v1.0", local_files_only=True, force_download=True)
    assert all(p.startswith("sub/") for p in kwargs["allow_patterns"])  # only the subfolder is fetched

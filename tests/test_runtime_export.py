"""ONNX, OpenVINO and LiteRT exports checked in their own runtimes (presets/runtime_export.py,
presets/runtimes.py): outputs equal the Keras model's on several batch sizes and lengths with
padding, hostile requests refused by the wrapper and never a crash in the runtime itself, the CLI
and the pipelines on an export.

The conversion runs in TensorFlow whatever the backend (JAX and torch reach it through a TensorFlow
subprocess), so TensorFlow runs every format and model here; JAX and torch run the route itself on
ONNX (a DeBERTa classifier and the DeepSeek causal LM) and the CLI / pipeline test."""

import os

import keras
import numpy as np
import pytest

from hf_reference import V2_VARIANTS, assert_close, build_hf_model, hf_config
from harness import to_numpy

pytest.importorskip("onnxruntime", reason="the serving extra (onnxruntime) is not installed")

import keras_deberta as kd  # noqa: E402
import keras_deepseek as ks  # noqa: E402
from presets.runtimes import ExportedModel  # noqa: E402

BACKEND = keras.backend.backend()
TINY_V2 = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
               position_biased_input=False, norm_rel_ebd="layer_norm", type_vocab_size=2, num_labels=3)
TINY_V1 = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64, relative_attention=True, pos_att_type=["p2c", "c2p"], num_labels=3)
TINY_DEEPSEEK = dict(vocab_size=100, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                     num_hidden_layers=2, num_attention_heads=4, kv_lora_rank=8, q_lora_rank=None,
                     qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6, n_routed_experts=4,
                     num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
                     max_position_embeddings=64, num_labels=3, pad_token_id=0)

# (case, model class, config class, config, formats checked on TensorFlow)
CASES = {
    "v2_classifier": (kd.TFDebertaV2ForSequenceClassification, kd.DebertaV2Config, TINY_V2,
                      ("onnx", "openvino", "litert")),
    "v2_multiple_choice": (kd.TFDebertaV2ForMultipleChoice, kd.DebertaV2Config, TINY_V2, ("onnx", "litert")),
    "v2_question_answering": (kd.TFDebertaV2ForQuestionAnswering, kd.DebertaV2Config, TINY_V2, ("openvino",)),
    "v1_token_classifier": (kd.TFDebertaForTokenClassification, kd.DebertaConfig, TINY_V1, ("onnx", "litert")),
    "deepseek_causal_lm": (ks.TFDeepseekV2ForCausalLM, ks.DeepseekV2Config, TINY_DEEPSEEK, ("onnx", "openvino")),
    "deepseek_classifier": (ks.TFDeepseekV2ForSequenceClassification, ks.DeepseekV2Config, TINY_DEEPSEEK, ("onnx",)),
}
OFF_TENSORFLOW = {("v2_classifier", "onnx"), ("deepseek_causal_lm", "onnx")}
PARAMS = [(case, fmt) for case, (*_, formats) in CASES.items() for fmt in formats
          if BACKEND == "tensorflow" or (case, fmt) in OFF_TENSORFLOW]


def _runtime_available(fmt):
    module = {"onnx": "onnxruntime", "openvino": "openvino", "litert": "ai_edge_litert"}[fmt]
    pytest.importorskip(module, reason=f"the serving extra ({module}) is not installed")


def _requests(case, rng, vocab):
    """Batches of several sizes and lengths, the first row of each padded."""
    for batch, length in ((1, 1), (3, 17), (2, 40)):
        shape = (batch, 3, length) if case == "v2_multiple_choice" else (batch, length)
        ids = rng.randint(1, vocab, shape).astype("int32")
        mask = np.ones(shape, "int32")
        if length > 1:
            mask[0, ..., length // 2:] = 0
        yield ids, mask


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(case, format) -> (Keras model, export directory), each exported once."""
    built, cache = {}, {}

    def get(case, fmt):
        if (case, fmt) not in cache:
            cls, config_class, config, _ = CASES[case]
            if case not in built:
                keras.utils.set_random_seed(0)
                built[case] = cls(config_class(**config))
            directory = str(tmp_path_factory.mktemp(f"{case}-{fmt}") / "export")
            built[case].export(directory, format=fmt)
            cache[case, fmt] = (built[case], directory)
        return cache[case, fmt]

    return get


@pytest.mark.parametrize("case,fmt", PARAMS)
def test_export_equals_the_keras_model_in_its_runtime(exports, case, fmt):
    _runtime_available(fmt)
    model, directory = exports(case, fmt)
    exported = ExportedModel(directory)
    assert exported.format == fmt and exported.output_names == tuple(model.primary_output_names)
    rng = np.random.RandomState(0)
    for ids, mask in _requests(case, rng, model.config.vocab_size):
        got = exported(input_ids=ids, attention_mask=mask)
        want = model(ids, attention_mask=mask)
        for name in exported.output_names:  # every position, padding included: the same graph runs
            assert_close(got[name], to_numpy(want[name]), tol=1e-5, what=f"{case} {fmt} {name} {ids.shape}")


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "litert"] if BACKEND == "tensorflow" else ["onnx"])
def test_hostile_requests_are_refused_before_the_runtime_and_never_crash_it(exports, fmt):
    _runtime_available(fmt)
    model, directory = exports("v2_classifier", fmt)
    exported = ExportedModel(directory)
    ids = np.random.RandomState(1).randint(1, 100, (2, 7)).astype("int32")
    bad_id = ids.copy()
    bad_id[1, 3] = 100  # vocab_size
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 100\)"):
        exported(input_ids=bad_id)
    with pytest.raises(ValueError, match="longer than this export's max_length 64"):
        exported(input_ids=np.ones((1, 65), "int32"))
    with pytest.raises(TypeError, match="must hold integers"):
        exported(input_ids=ids.astype("float32"))
    with pytest.raises(ValueError, match=r"must have shape \[batch, length\]"):
        exported(input_ids=ids[None])
    with pytest.raises(ValueError, match="empty batch"):
        exported(input_ids=ids[:0])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        exported(input_ids=ids, attention_mask=np.ones((2, 6), "int32"))
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 2\)"):
        exported(input_ids=ids, token_type_ids=np.full((2, 7), 5, "int32"))
    with pytest.raises(TypeError, match="position_ids"):
        exported(input_ids=ids, position_ids=ids)
    # The runtime called directly, past the wrapper: onnxruntime and LiteRT refuse with their own
    # errors; OpenVINO (whose gather does not check its indices, and which converts a float input)
    # answers finite numbers. The process survives either way.
    raw = exported._run
    feed = {"input_ids": bad_id, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    float_ids = dict(feed, input_ids=ids.astype("float32"))
    if fmt == "openvino":
        assert np.isfinite(raw(feed)["logits"]).all() and np.isfinite(raw(float_ids)["logits"]).all()
    else:
        with pytest.raises(Exception, match="(?i)out of (data )?bounds|index"):
            raw(feed)
        with pytest.raises(Exception, match="(?i)type|dtype|int32"):
            raw(float_ids)
    # the session still answers a good request afterwards
    assert_close(exported(input_ids=ids)["logits"], to_numpy(model(ids).logits), tol=1e-5, what="after hostile")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="converts in this process (the other backends "
                    "convert in a TensorFlow subprocess, which the inline limit set here does not reach)")
def test_onnx_weights_are_initializers_inline_or_in_a_data_file_and_quantized_models_convert(tmp_path, monkeypatch):
    """The ONNX graph takes only the model's inputs (every weight is an initializer, none a graph
    input), weights above the inline limit go to model.onnx.data beside it, and an int8-quantized
    model converts with its int8 kernels and scales."""
    onnx = pytest.importorskip("onnx")
    from presets import runtime_export

    keras.utils.set_random_seed(0)
    model = kd.TFDebertaV2ForSequenceClassification(kd.DebertaV2Config(**TINY_V2))
    model.build_with_dummy_inputs()
    model.quantize("int8")
    monkeypatch.setattr(runtime_export, "ONNX_INLINE_LIMIT", 0)
    directory = str(tmp_path / "export")
    model.export(directory, format="onnx")
    assert os.path.getsize(os.path.join(directory, "model.onnx.data")) > 0
    graph = onnx.load(os.path.join(directory, "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == sorted(model.export_input_names)
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    exported = ExportedModel(directory)
    for ids, mask in _requests("v2_classifier", np.random.RandomState(1), model.config.vocab_size):
        want = to_numpy(model(ids, attention_mask=mask)["logits"])
        assert_close(exported(input_ids=ids, attention_mask=mask)["logits"], want, tol=1e-5,
                     what=f"int8 onnx logits {ids.shape}")


def test_formats_a_model_cannot_convert_to_are_refused_before_any_work(tmp_path):
    model = ks.TFDeepseekV2ForCausalLM(ks.DeepseekV2Config(**TINY_DEEPSEEK))
    with pytest.raises(ValueError, match="exports to onnx, openvino and tf_saved_model, not 'litert'"):
        model.export(str(tmp_path / "x"), format="litert")
    classifier = kd.TFDebertaV2ForSequenceClassification(kd.DebertaV2Config(**TINY_V2))
    with pytest.raises(ValueError, match="unsupported export format 'tflite'"):
        classifier.export(str(tmp_path / "y"), format="tflite")
    with pytest.raises(ValueError, match="sequence_length applies to the SavedModel"):
        classifier.export(str(tmp_path / "z"), format="onnx", sequence_length=8)
    assert not os.listdir(tmp_path)


def test_cli_export_to_onnx_and_the_pipeline_on_it_answer_as_transformers(tmp_path):
    """A transformers checkpoint (every parameter perturbed) with the real v3 tokenizer ->
    `python -m keras_deberta export --format onnx --with-tokenizer` -> `pipeline(model=export)`:
    the scores transformers' own pipeline gives on the checkpoint."""
    import transformers

    from keras_deberta import DebertaV2Tokenizer, pipeline
    from keras_deberta.cli import main

    tokenizer = DebertaV2Tokenizer.from_pretrained(os.path.join(os.path.dirname(kd.__file__), "assets", "sst2-tiny"))
    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    config = hf_config(**dict(V2_VARIANTS["v3_like"], vocab_size=len(tokenizer), max_position_embeddings=128),
                       num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()})
    hf_model = build_hf_model(config, "DebertaV2ForSequenceClassification", seed=3)
    checkpoint, out = str(tmp_path / "checkpoint"), str(tmp_path / "onnx")
    hf_model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    assert main(["export", "--model", checkpoint, "--task", "text-classification", "--output", out,
                 "--format", "onnx", "--with-tokenizer"]) == 0
    assert {"model.onnx", "serving.json", "config.json", "spm.model"} <= set(os.listdir(out))
    texts = ["a warm and funny film", "tedious , overlong and joyless .", "it is"]
    served = pipeline("text-classification", model=out)
    assert isinstance(served.model, ExportedModel)
    want = transformers.pipeline("text-classification", model=hf_model,
                                 tokenizer=transformers.DebertaV2Tokenizer.from_pretrained(checkpoint))
    for got, ref in zip(served(texts, top_k=None), want(texts, top_k=None)):
        got, ref = {g["label"]: g["score"] for g in got}, {r["label"]: r["score"] for r in ref}
        assert got.keys() == ref.keys()
        for label in ref:
            assert abs(got[label] - ref[label]) <= 1e-4, (label, got[label], ref[label])

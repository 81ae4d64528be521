"""keras_deepseek.pipeline("text-generation") gives transformers' text-generation pipeline output.

One tiny perturbed transformers DeepseekV2ForCausalLM with a DeepSeek-style tokenizer (see
test_deepseek_tokenizer.py), saved as a checkpoint directory; greedy generation through
transformers.pipeline and ours must give the same generated_text, for single prompts, batches of
prompts of different lengths (ours left-pads them into one generate call) and chats.
"""

import pytest

from test_deepseek_tokenizer import SMALL_CORPUS, build_deepseek_like_tokenizer, shared_tiny_checkpoint

NEW = 6  # new tokens per test: short generations keep the compiled loops few and small
PROMPTS = ["The quick brown fox", "Keras models run on TensorFlow, JAX and PyTorch alike. Mixture", "Who"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return shared_tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def hf_pipe(checkpoint):
    import transformers

    _, hf_model, hf_tok = checkpoint
    return transformers.pipeline("text-generation", model=hf_model, tokenizer=hf_tok)


@pytest.fixture(scope="module")
def gen(checkpoint):
    from keras_deepseek import pipeline

    return pipeline("text-generation", model=checkpoint[0])


def test_greedy_batch_of_prompts_matches_transformers(gen, hf_pipe):
    ref = hf_pipe(PROMPTS, do_sample=False, max_new_tokens=NEW)
    got = gen(PROMPTS, do_sample=False, max_new_tokens=NEW)
    lengths = [len(gen.tokenizer.encode(p)) for p in PROMPTS]
    assert len(set(lengths)) == len(PROMPTS)  # the batch really mixes prompt lengths
    assert got == ref
    assert all(r[0]["generated_text"] != p for r, p in zip(got, PROMPTS))  # something was generated


def test_single_prompt_and_new_text_only_match_transformers(gen, hf_pipe):
    prompt = "The quick brown fox jumps over"  # as long as the chat below: one compiled loop for both
    assert gen(prompt, do_sample=False, max_new_tokens=NEW) == hf_pipe(prompt, do_sample=False, max_new_tokens=NEW)
    ref = hf_pipe(prompt, do_sample=False, max_new_tokens=NEW, return_full_text=False)
    assert gen(prompt, do_sample=False, max_new_tokens=NEW, return_full_text=False) == ref


def test_chat_matches_transformers(gen, hf_pipe):
    chat = [{"role": "user", "content": "Who?"}]
    ref = hf_pipe(chat, do_sample=False, max_new_tokens=NEW)
    got = gen(chat, do_sample=False, max_new_tokens=NEW)
    assert got == ref
    assert got[0]["generated_text"][-1]["role"] == "assistant"
    assert chat == [{"role": "user", "content": "Who?"}]  # the caller's list is not changed


def test_seeded_sampling_is_reproducible(gen):
    kwargs = dict(do_sample=True, temperature=0.9, top_k=40, top_p=0.95, max_new_tokens=NEW, seed=5)
    first = gen(PROMPTS[0], num_return_sequences=2, **kwargs)
    assert first == gen(PROMPTS[0], num_return_sequences=2, **kwargs)
    assert len(first) == 2 and all(r["generated_text"].startswith(PROMPTS[0]) for r in first)
    with pytest.raises(ValueError, match="num_return_sequences > 1 needs do_sample=True"):
        gen(PROMPTS[0], do_sample=False, num_return_sequences=2)


def test_bad_inputs_fail_clearly(gen, checkpoint, tmp_path):
    from keras_deepseek import DeepseekV2Config, DeepseekV2Tokenizer, TFDeepseekV2ForCausalLM, pipeline
    from presets.errors import CheckpointNotFoundError

    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        pipeline("summarization", model=checkpoint[0])
    with pytest.raises(ValueError, match="empty prompt"):
        gen("", max_new_tokens=NEW)
    assert gen([], max_new_tokens=NEW) == []  # no prompts, no answers (as keras_deberta's pipelines)
    with pytest.raises(TypeError, match="input 1 is a int"):
        gen(["fine", 3], max_new_tokens=NEW)
    with pytest.raises(CheckpointNotFoundError, match="no config.json"):
        pipeline("text-generation", model=str(tmp_path))
    # A tokenizer whose ids run past the model's embedding table.
    tok_dir = tmp_path / "tok"
    build_deepseek_like_tokenizer(str(tok_dir), SMALL_CORPUS)
    tokenizer = DeepseekV2Tokenizer.from_pretrained(str(tok_dir))
    config = DeepseekV2Config.from_dict(gen.model.config.to_dict())
    config.vocab_size = tokenizer.max_token_id  # one id short
    with pytest.raises(ValueError, match="do not belong to the same checkpoint"):
        pipeline("text-generation", model=TFDeepseekV2ForCausalLM(config), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="pass tokenizer="):
        pipeline("text-generation", model=gen.model)


def test_generation_config_json_sets_defaults(checkpoint, tmp_path):
    """generation_config.json beats transformers' pipeline defaults (do_sample=True,
    max_new_tokens=256, temperature=0.7); pipeline() keywords beat the file."""
    import json
    import shutil

    from keras_deepseek import pipeline

    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoint[0], directory)
    (directory / "generation_config.json").write_text(json.dumps({"do_sample": False, "max_new_tokens": 3,
                                                                  "top_p": None, "bos_token_id": 1}))
    gen = pipeline("text-generation", model=str(directory), max_new_tokens=4)
    assert gen.generation_defaults == {"do_sample": False, "max_new_tokens": 4, "temperature": 0.7}


def test_a_prompt_past_the_position_table_keeps_its_end_as_transformers_hole(gen, checkpoint):
    """The config's max_position_embeddings bounds prompt + new tokens; a longer prompt keeps its
    last tokens, as transformers' handle_long_generation="hole" (whose bound is the tokenizer's
    model_max_length: set to the same value here)."""
    import transformers

    from keras_deepseek import InputTooLongError

    directory, hf_model, _ = checkpoint
    limit = gen.model.config.max_position_embeddings
    prompt = " ".join(PROMPTS * 6)
    assert len(gen.tokenizer(prompt)["input_ids"]) > limit
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory, model_max_length=limit)
    ref = transformers.pipeline("text-generation", model=hf_model, tokenizer=hf_tok)(
        prompt, do_sample=False, max_new_tokens=NEW, handle_long_generation="hole")
    assert gen(prompt, do_sample=False, max_new_tokens=NEW) == ref
    with pytest.raises(InputTooLongError, match=f"more than the {limit - NEW} this model takes"):
        gen(prompt, do_sample=False, max_new_tokens=NEW, truncation=False)
    with pytest.raises(ValueError, match="leaves no room for a prompt"):
        gen("Who", do_sample=False, max_new_tokens=limit)

"""`generate` compiles a bounded number of loops: 200 calls with varied prompt lengths, token budgets,
temperatures, top-k, top-p, eos and pad ids compile a handful of functions (prompt and cache lengths
are bucketed; every sampling setting is a runtime value), hold at most GENERATE_FUNCTIONS of them, and
leave peak memory flat. (Settings used to be compile-time constants: every new value compiled a new
loop, without bound.)"""

import resource

import numpy as np

import keras_deepseek as ks
from harness import perturb_variables, tiny_config
from keras_deepseek.generation import GENERATE_FUNCTIONS

CALLS = 200
RSS_BOUND_MB = 100


def test_two_hundred_varied_generate_calls_compile_a_handful_of_loops(monkeypatch):
    cls = ks.TFDeepseekV2ForCausalLM
    model = perturb_variables(cls(tiny_config(cls)))
    compiled = []
    original = model._compiled

    def counting(run, jit_compile=True):
        compiled.append(run)
        return original(run, jit_compile)

    monkeypatch.setattr(model, "_compiled", counting)
    rng = np.random.RandomState(0)
    vocab = model.config.vocab_size
    peak_after_warmup = None
    for call in range(CALLS):
        prompt = int(rng.randint(1, 13))  # one prompt bucket (16 slots) ...
        new = int(rng.randint(1, 4))      # ... and one cache bucket (24 slots)
        sample = bool(rng.rand() < 0.5)
        ids = rng.randint(0, vocab, size=(2, prompt))
        out = model.generate(
            ids, max_new_tokens=new, do_sample=sample, temperature=float(rng.uniform(0.3, 2.0)),
            top_k=int(rng.randint(0, vocab)), top_p=float(rng.uniform(0.05, 1.0)),
            eos_token_id=[int(e) for e in rng.randint(0, vocab, size=rng.randint(0, 4))],
            pad_token_id=int(rng.randint(0, vocab)), seed=call)
        out = np.asarray(out)
        assert out.shape[0] == 2 and prompt < out.shape[1] <= prompt + new
        np.testing.assert_array_equal(out[:, :prompt], ids)
        if call == 19:
            peak_after_warmup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # One prefill and one decode loop per (greedy, sampling): three functions for 200 calls.
    assert len(compiled) <= 3, f"{len(compiled)} generation functions compiled for {CALLS} calls"
    assert len(model._generate_fns) <= GENERATE_FUNCTIONS
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_after_warmup
    assert growth < RSS_BOUND_MB, f"peak RSS grew by {growth:.0f} MB over {CALLS - 20} calls"

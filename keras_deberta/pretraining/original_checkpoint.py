"""States saved by Microsoft's original RTD pretraining code (DeBERTa/apps/tasks/rtd_task.py,
`RTDModel.state_dict()`) -> our generator, discriminator and pretrainer, to continue training here.

The original names are transformers' names under a `generator.` / `discriminator.` prefix (a
`module.` prefix from DistributedDataParallel is dropped too). The one difference is embedding
sharing: the original deletes the discriminator's tables and, under GDES, registers the deltas as
`deberta.embeddings.word_embeddings._weight` / `position_embeddings._weight`, rebuilding
`weight = generator weight (detached) + _weight` before each discriminator call; under plain
sharing ("es") the discriminator reads the generator's tables and stores none. Here the
discriminator checkpoint gets the effective tables (generator + delta), and the pretrainer gets
the word-embedding delta itself, exactly.
"""

import numpy as np

from keras_deberta.configuration_deberta import DebertaV2Config
from keras_deberta.modeling_deberta_v2 import TFDebertaV2ForMaskedLM
from keras_deberta.pretraining.rtd_pretrainer import DebertaV3RTDPretrainer
from keras_deberta.rtd import TFDebertaV2ForReplacedTokenDetection
from presets.errors import CheckpointError

_DELTA = "._weight"
_WORD_EMBEDDINGS = "deberta.embeddings.word_embeddings.weight"


def _numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def split_original_state(state):
    """One `RTDModel.state_dict()` -> (generator state, discriminator state), prefixes removed."""
    halves = {"generator.": {}, "discriminator.": {}}
    for name, value in state.items():
        bare = name[len("module."):] if name.startswith("module.") else name
        for prefix, half in halves.items():
            if bare.startswith(prefix):
                half[bare[len(prefix):]] = value
                break
        else:
            raise CheckpointError(f"{name!r} is neither a generator. nor a discriminator. tensor of an RTDModel state")
    if not halves["generator."] or not halves["discriminator."]:
        raise CheckpointError("an RTDModel state holds generator.* and discriminator.* tensors; got "
                              f"{'no generator' if not halves['generator.'] else 'no discriminator'} tensors")
    return halves["generator."], halves["discriminator."]


def convert_original_states(generator_state, discriminator_state):
    """-> (generator tensors, discriminator tensors, sharing, word-embedding delta or None), as numpy
    arrays under transformers' names; sharing is "gdes" (deltas present), "es" (the discriminator
    has no tables of its own) or "none"."""
    gen = {n: _numpy(v) for n, v in generator_state.items()}
    disc = {}
    deltas = {}
    for name, value in discriminator_state.items():
        if name.endswith(_DELTA):
            deltas[name[: -len(_DELTA)] + ".weight"] = _numpy(value)
        else:
            disc[name] = _numpy(value)
    if _WORD_EMBEDDINGS not in gen:
        raise CheckpointError(f"the generator state has no {_WORD_EMBEDDINGS}")
    if deltas:
        sharing = "gdes"
        for name, delta in deltas.items():
            if name not in gen:
                raise CheckpointError(f"the discriminator holds a GDES delta for {name}, which the generator lacks")
            if gen[name].shape != delta.shape:
                raise CheckpointError(f"GDES delta of {name} has shape {delta.shape}, the generator's table "
                                      f"{gen[name].shape}")
            disc[name] = gen[name] + delta
    elif _WORD_EMBEDDINGS not in disc:
        sharing = "es"
        for name in (_WORD_EMBEDDINGS, "deberta.embeddings.position_embeddings.weight"):
            if name in gen:
                disc[name] = gen[name]
    else:
        sharing = "none"
    return gen, disc, sharing, deltas.get(_WORD_EMBEDDINGS)


def original_model_config(config_dict, **overrides):
    """One model's part of the original's `model_config.json` -> DebertaV2Config."""
    config = dict(config_dict)
    if "padding_idx" in config:
        config["pad_token_id"] = config.pop("padding_idx")
    return DebertaV2Config.from_dict(config, **overrides)


def load_original_pretrainer(generator_state, discriminator_state, generator_config, discriminator_config,
                             rtd_lambda=50.0, seed=None):
    """Our `DebertaV3RTDPretrainer` holding the original's weights, its GDES delta exactly.

    Args:
        generator_state, discriminator_state: the two halves of the state (`split_original_state`),
            torch tensors or numpy arrays.
        generator_config, discriminator_config: DebertaV2Config or the original's config dicts; the
            generator gets the enhanced mask decoder, as the original's MaskedLanguageModel has.
    """
    if isinstance(generator_config, dict):
        generator_config = original_model_config(generator_config, enhanced_mask_decoder=True)
    if isinstance(discriminator_config, dict):
        discriminator_config = original_model_config(discriminator_config)
    gen_tensors, disc_tensors, sharing, delta = convert_original_states(generator_state, discriminator_state)
    generator = TFDebertaV2ForMaskedLM(generator_config)
    generator.load_info = generator.load_hf_tensors(gen_tensors, source="original generator state")
    discriminator = TFDebertaV2ForReplacedTokenDetection(discriminator_config)
    discriminator.load_info = discriminator.load_hf_tensors(disc_tensors, source="original discriminator state")
    pretrainer = DebertaV3RTDPretrainer(generator, discriminator, rtd_lambda=rtd_lambda, embedding_sharing=sharing,
                                        seed=seed)
    if delta is not None:  # exact, rather than the rounded (generator + delta) - generator
        pretrainer.embedding_delta.assign(delta.astype(pretrainer.embedding_delta.dtype))
    return pretrainer

"""`make demo`: build a TFDebertaV2Model from an HF-format checkpoint and summarise its outputs.

With no --model, the demo first writes a small random DeBERTa-v3-style checkpoint (config.json +
model.safetensors, the layout transformers saves) to a temporary directory, then loads it back
exactly as a Hub checkpoint would be. With --model DIR_OR_HUB_ID it uses that checkpoint.
"""

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the demo prints its own summary

SPM_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                        "data", "vocab", "deberta-v3", "spm.model")
SENTENCES = [
    "The movie was a delight from start to finish.",
    "A tedious, overlong and joyless exercise.",
]


def _small_v3_checkpoint(directory):
    from keras_deberta import DebertaV2Config, TFDebertaV2Model

    config = DebertaV2Config(
        vocab_size=128100, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512, max_position_embeddings=512, relative_attention=True, position_buckets=256,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False,
        type_vocab_size=0,
    )
    TFDebertaV2Model(config).save_pretrained(directory)


def _encode(sentences, max_length=32):
    """Token ids from the real DeBERTa-v3 SentencePiece model when ../shared/data has it."""
    if os.path.exists(SPM_PATH):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=SPM_PATH)
        rows = [[1] + sp.encode(s)[: max_length - 2] + [2] for s in sentences]  # [CLS] ... [SEP]
        source = "DeBERTa-v3 SentencePiece vocabulary"
    else:
        rng = np.random.RandomState(0)
        rows = [[1] + list(rng.randint(5, 1000, size=len(s.split()))) + [2] for s in sentences]
        source = "random ids (../shared/data not found)"
    length = max(len(r) for r in rows)
    ids = np.zeros((len(rows), length), dtype="int32")
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask, source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory or Hub id (default: a small random one)")
    args = parser.parse_args(argv)

    import keras
    from keras_deberta import TFDebertaV2Model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            model_dir = os.path.join(tmp, "deberta-v3-small-random")
            _small_v3_checkpoint(model_dir)
            print(f"wrote a random DeBERTa-v3-style checkpoint: {sorted(os.listdir(model_dir))}")
        start = time.perf_counter()
        model = TFDebertaV2Model.from_pretrained(model_dir)
        print(f"loaded {model_dir} in {time.perf_counter() - start:.2f}s on backend {keras.backend.backend()}: "
              f"{model.count_params():,} parameters")
        ids, mask, source = _encode(SENTENCES)
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = keras.ops.convert_to_numpy(out.last_hidden_state)
        print(f"inputs: {ids.shape[0]} sentences, length {ids.shape[1]} ({source})")
        print(f"last_hidden_state: shape {hidden.shape}, dtype {hidden.dtype}")
        for i, layer in enumerate(out.hidden_states):
            values = keras.ops.convert_to_numpy(layer)[mask.astype(bool)]
            print(f"  hidden_states[{i:2d}]  mean {values.mean():+.4f}  std {values.std():.4f}")
        cls = hidden[:, 0]
        cos = float(cls[0] @ cls[1] / (np.linalg.norm(cls[0]) * np.linalg.norm(cls[1])))
        print(f"cosine similarity of the two [CLS] vectors: {cos:.4f}")


if __name__ == "__main__":
    main()

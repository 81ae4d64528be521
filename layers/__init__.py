"""Backend-agnostic Keras layers shared by the DeBERTa and DeepSeek families (keras.ops only)."""

from layers.activations import get_activation
from layers.disentangled_attention import DisentangledSelfAttention
from layers.embeddings import DebertaEmbeddings, RelativeEmbedding
from layers.model_io import ModelOutput
from layers.ngie import NGIEConv
from layers.relative_position import log_bucket_position

__all__ = [
    "DebertaEmbeddings",
    "DisentangledSelfAttention",
    "ModelOutput",
    "NGIEConv",
    "RelativeEmbedding",
    "get_activation",
    "log_bucket_position",
]

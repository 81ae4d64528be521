"""Backend-agnostic Keras layers shared by the DeBERTa and DeepSeek families (keras.ops only)."""

from layers.activations import get_activation
from layers.disentangled_attention import DisentangledSelfAttention
from layers.embeddings import DebertaEmbeddings, RelativeEmbedding
from layers.latent_attention import MultiHeadLatentAttention
from layers.moe import GatedMLP, MoEBlock, RoutedExperts, TopKRouter
from layers.ngie import NGIEConv
from layers.relative_position import log_bucket_position
from layers.rms_norm import RMSNorm
from layers.rotary import apply_interleaved_rope, rope_frequencies

__all__ = [
    "DebertaEmbeddings",
    "DisentangledSelfAttention",
    "GatedMLP",
    "MoEBlock",
    "MultiHeadLatentAttention",
    "NGIEConv",
    "RMSNorm",
    "RelativeEmbedding",
    "RoutedExperts",
    "TopKRouter",
    "apply_interleaved_rope",
    "get_activation",
    "log_bucket_position",
    "rope_frequencies",
]

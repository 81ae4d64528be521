"""DeepSeek-V2 as Keras 3 models (Multi-head Latent Attention, DeepSeekMoE).

Not implemented yet: the package exists so the distribution's layout is final; the models land
with the DeepSeek issue.
"""

__all__ = []

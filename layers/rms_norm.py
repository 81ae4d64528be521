"""RMSNorm as DeepSeek / LLaMA use it: normalise in float32, scale by a learned gain (no bias)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="layers")
class RMSNorm(keras.layers.Layer):
    """y = weight * (x / sqrt(mean(x^2, -1) + eps)), the normalisation computed in float32.

    Matches transformers' `DeepseekV2RMSNorm`: the normalised value is cast back to the input dtype
    before the gain is applied.

    Args:
        epsilon: added to the mean square.
    Call:
        x: [..., dim] -> [..., dim].
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        dim = input_shape[-1] if isinstance(input_shape, (tuple, list)) else input_shape
        self.weight = self.add_weight(name="weight", shape=(dim,), initializer="ones")
        self.built = True

    def call(self, x):
        dtype = x.dtype
        x32 = ops.cast(x, "float32")
        variance = ops.mean(ops.square(x32), axis=-1, keepdims=True)
        normed = ops.cast(x32 * ops.rsqrt(variance + self.epsilon), dtype)
        return ops.cast(self.weight, dtype) * normed

    def quantize(self, mode=None, type_check=True, config=None):
        """Norm gains stay in float: nothing to quantize (keeps `model.quantize` quiet)."""

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}

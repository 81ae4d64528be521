"""DebertaV2Config lives with DebertaConfig (they share their fields); imported here under
transformers' module name."""

from keras_deberta.configuration_deberta import DebertaV2Config

__all__ = ["DebertaV2Config"]

"""Every task class of both families through the shared Keras-native checks (tests/harness.py):
.keras round trip, other batch and length, predict on arrays and tf.data, mixed precision, int8,
LoRA, SavedModel export.

Export on PyTorch reloads the model in a TensorFlow subprocess and exports it there (Keras cannot
export from torch); that hop does not depend on the class, and the TensorFlow and JAX runs export
every class, so the torch run exports one class per family (~10 s of subprocess each)."""

import keras
import pytest

from harness import ALL_TASK_CLASSES, class_id, run_model_test

TORCH_EXPORTS = ("TFDebertaV2ForSequenceClassification", "TFDebertaForTokenClassification",
                 "TFDeepseekV2ForCausalLM")


@pytest.mark.parametrize("cls", ALL_TASK_CLASSES, ids=class_id)
def test_task_class_passes_the_keras_native_checks(cls, tmp_path):
    checks = ("keras_file", "shapes", "predict", "tf_data", "mixed_precision", "int8", "lora")
    if keras.backend.backend() != "torch" or cls.__name__ in TORCH_EXPORTS:
        checks += ("export",)
    run_model_test(cls, tmp_path, checks=checks)

"""The documented config maxima (presets/config_bounds.py) leave every released checkpoint alone:
each known Hub config (presets/registry.py, the repositories' own config.json fields) passes the
file check and the build-time check; the weight count that bounds a `.keras` file's config is a
lower bound of the real one. The hostile side is tests/test_hostile_inputs.py."""

import pytest

import keras_deberta as kd
import keras_deepseek as ks
from presets.config_bounds import check_buildable, check_file_values
from presets.registry import KNOWN_CHECKPOINTS

CONFIG_CLASSES = {"deberta": kd.DebertaConfig, "deberta-v2": kd.DebertaV2Config, "deepseek_v2": ks.DeepseekV2Config}


@pytest.mark.parametrize("name", sorted(KNOWN_CHECKPOINTS))
def test_released_configs_are_within_the_bounds(name):
    values = KNOWN_CHECKPOINTS[name]
    config_class = CONFIG_CLASSES[values["model_type"]]
    check_file_values(values, config_class.field_specs, name)
    config = config_class.from_file_dict(values, name)
    check_buildable(config, config_class.field_specs)
    assert config.minimum_weight_count() > 0


@pytest.mark.parametrize("cls", [kd.TFDebertaV2Model, kd.TFDebertaModel, ks.TFDeepseekV2Model],
                         ids=lambda c: c.__name__)
def test_minimum_weight_count_is_a_lower_bound(cls):
    # `.keras` loading refuses a config implying more weights than the archive stores; the bound
    # must never exceed what a model of that config really has.
    from harness import tiny_config

    config = tiny_config(cls)
    assert 0 < config.minimum_weight_count() <= cls(config).count_params()

"""A small `config.json` object shared by every model family.

It mirrors the part of transformers' `PretrainedConfig` that users touch: keyword construction with
HF field names and defaults, `from_pretrained(dir)`, `from_dict`, `to_dict`, `save_pretrained`, and
the label maps. Keys a subclass does not know are kept as attributes, so a round trip through our
config never drops what another tool wrote.
"""

import copy
import json
import os

from presets.config_bounds import LAYER_INDEX, check_file_values
from presets.errors import CheckpointError
from presets.hub import resolve_config_dict
from presets.io import atomic_write_text, read_json_object
from presets.loading_options import pop_loading_options, refuse_unknown_keywords

CONFIG_NAME = "config.json"


class BaseConfig:
    """Base class: subclasses set `model_type` and pass their own fields to `__init__`."""

    model_type = None
    is_composition = False  # transformers: True for configs made of sub-configs (encoder-decoder)
    # {field: spec} (presets/config_bounds.py): types and ranges a config read from a file must
    # respect, and the maxima a model is built under.
    field_specs = {}

    # Fields every HF config has; subclass fields come on top of these.
    def __init__(
        self,
        output_hidden_states=False,
        output_attentions=False,
        return_dict=True,
        is_encoder_decoder=False,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
        id2label=None,
        label2id=None,
        num_labels=None,
        problem_type=None,
        tie_word_embeddings=True,
        torch_dtype=None,
        dtype=None,
        architectures=None,
        **kwargs,
    ):
        # Defaults of the models' call options, as in transformers.
        self.output_hidden_states = bool(output_hidden_states)
        self.output_attentions = bool(output_attentions)
        self.return_dict = bool(return_dict)
        self.is_encoder_decoder = bool(is_encoder_decoder)
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.problem_type = problem_type
        self.tie_word_embeddings = tie_word_embeddings
        self.dtype = dtype if dtype is not None else torch_dtype
        self.architectures = architectures
        if id2label is not None:
            # As in HF: an explicit id2label wins over num_labels in the constructor.
            self.id2label = {int(k): v for k, v in id2label.items()}
        else:
            self.num_labels = 2 if num_labels is None else num_labels
        if label2id is not None and len(label2id) == len(self.id2label):
            self.label2id = {k: int(v) for k, v in label2id.items()}
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}
        # `auto_map` names remote code; we never import it, but keep the key for round trips.
        for key, value in kwargs.items():
            if key in ("model_type", "transformers_version"):
                continue
            setattr(self, key, value)

    @property
    def torch_dtype(self):
        """transformers' older name for `dtype` (the checkpoint's parameter dtype)."""
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value):
        self.dtype = value

    @property
    def use_return_dict(self):
        """Whether models return a ModelOutput by default (transformers' name for `return_dict`)."""
        return self.return_dict

    # --- labels ----------------------------------------------------------------------------------
    @property
    def num_labels(self):
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value):
        if value is None or int(value) < 0:
            raise ValueError(f"num_labels must be a non-negative integer, got {value!r}")
        if not hasattr(self, "id2label") or len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(int(value))}
            self.label2id = {v: k for k, v in self.id2label.items()}

    # --- dict / json -----------------------------------------------------------------------------
    def to_dict(self):
        out = copy.deepcopy(self.__dict__)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        if out.get("dtype") is None:
            out.pop("dtype", None)
        out["model_type"] = self.model_type
        return out

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, config_dict, **overrides):
        config_dict = dict(config_dict)
        model_type = config_dict.get("model_type")
        if model_type is not None and cls.model_type is not None and model_type != cls.model_type:
            raise CheckpointError(
                f"config has model_type {model_type!r}, but {cls.__name__} expects {cls.model_type!r}"
            )
        config = cls(**config_dict)
        # Overrides act after construction, as in HF: `num_labels=3` replaces the label maps.
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    @classmethod
    def from_file_dict(cls, config_dict, source, **overrides):
        """`from_dict` for a dict read from a file: every known field's type and range is checked
        first (ConfigFieldTypeError / ConfigFieldError naming the field and `source`)."""
        check_file_values(config_dict, cls.field_specs, source)
        return cls.from_dict(config_dict, **overrides)

    @classmethod
    def from_json_file(cls, path, **overrides):
        if not os.path.isfile(path):
            raise CheckpointError(f"no config file at {path}")
        return cls.from_file_dict(read_json_object(path, error=CheckpointError), path, **overrides)

    def to_json_file(self, path):
        atomic_write_text(path, self.to_json_string())

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Reads `config.json` from a directory, a file path, a Hub id or a registry name; its
        fields are type- and range-checked as read from a file (`from_file_dict`).

        transformers' loading keywords (token, cache_dir, revision, local_files_only,
        force_download, subfolder, ...; presets/loading_options.py) go to the download and are
        never stored; the other keywords override config fields, and one that is no field of this
        config raises TypeError."""
        hub_options = pop_loading_options(kwargs)
        config = cls.from_file_dict(resolve_config_dict(name_or_path, **hub_options), f"config of {name_or_path}")
        refuse_unknown_keywords(config, kwargs, f"{cls.__name__}.from_pretrained")
        for key, value in kwargs.items():  # after construction, as from_dict's overrides
            setattr(config, key, value)
        return config

    # --- what the weights on disk must agree with (presets/config_bounds.py) --------------------
    def checkpoint_shape_claims(self):
        """(HF tensor name suffix, axis, size, field) for tensors whose shape follows from a field."""
        return []

    def checkpoint_count_claims(self):
        """(regex with one group of digits, count, field) for numbered checkpoint tensors."""
        return [(LAYER_INDEX, self.num_hidden_layers, "num_hidden_layers")]

    def minimum_weight_count(self):
        """A lower bound on the weights of any model built from this config."""
        return 0

    def save_pretrained(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.to_json_file(os.path.join(directory, CONFIG_NAME))

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"

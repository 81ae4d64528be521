"""One calling protocol for the task models of both families, as transformers' TF classes defined
it: inputs in every HF convention are parsed and checked, the backbone runs, the head turns its
sequence output into named outputs, labels (if given) add `loss`, and the result is a
`ModelOutput` (or a tuple with `return_dict=False`).

A family declares what its backbone takes and runs it; a head declares its labels, outputs and
loss. Everything between is written once, here:

    family:  input_names, input_rank, check_family_inputs(values), backbone_inputs(values),
             run_backbone(inputs, training, output_hidden_states, output_attentions)
    head:    label_names, head(sequence_output, values, training), check_labels(values),
             hf_loss(outputs, labels, sample_weight=None)
"""

import numpy as np
from keras import ops

from presets.model_io import (OUTPUT_FLAGS, ModelOutput, check_index_range, check_same_shape, concrete_value,
                              sequence_reference, unpack_inputs)

# Inputs whose values are indices (checked for dtype and shape); the family checks their ranges.
_INDEX_INPUTS = ("attention_mask", "token_type_ids", "position_ids")


class TaskProtocol:
    """`run_task` and the hooks it calls. Mixed into `TFPreTrainedModel`."""

    input_names = ("input_ids", "attention_mask", "inputs_embeds")
    input_rank = 2  # of input_ids: [batch, length]; multiple choice: [batch, choices, length]
    label_names = ()
    # Every label name any head of the family takes: a model given another head's labels refuses
    # them by name instead of ignoring them.
    family_label_names = ("labels",)

    # --- HF-style properties of every task model ------------------------------------------------
    main_input_name = "input_ids"

    # --- the protocol ----------------------------------------------------------------------------
    def run_task(self, inputs, kwargs, training=False):
        """inputs: the first positional argument of `call` (tensor, dict or list); kwargs: the
        keyword inputs, labels and output flags of the family's `call` signature."""
        flags = self.resolve_output_flags({f: kwargs.pop(f, None) for f in OUTPUT_FLAGS})
        values = self.parse_inputs(inputs, kwargs)
        features = self.run_backbone(
            self.backbone_inputs(values), training=training,
            output_hidden_states=flags["output_hidden_states"], output_attentions=flags["output_attentions"])
        result = self.head(features["last_hidden_state"], values, training=training)
        labels = {n: values[n] for n in self.label_names if n in values}
        loss = None
        if labels:
            # transformers' TF models return the loss with shape [1].
            loss = ops.reshape(self.hf_loss(result, labels), (1,))
        output = ModelOutput(loss=loss, **result, hidden_states=features.get("hidden_states"),
                             attentions=features.get("attentions"))
        return output if flags["return_dict"] else output.to_tuple()

    def resolve_output_flags(self, flags):
        """Call options, defaulting to the config's (`output_hidden_states`, `output_attentions`,
        `use_return_dict`), as transformers does. They must be Python (or concrete) booleans: they
        change the structure of the output."""
        defaults = {"output_attentions": self.config.output_attentions,
                    "output_hidden_states": self.config.output_hidden_states,
                    "return_dict": self.config.use_return_dict}
        resolved = {}
        for name, value in flags.items():
            if value is None:
                value = defaults[name]
            known = concrete_value(value) if not isinstance(value, (bool, np.bool_)) else value
            if known is None or np.ndim(known) != 0:
                raise ValueError(f"{name} must be a Python bool, got {value!r}")
            resolved[name] = bool(known)
        return resolved

    def parse_inputs(self, inputs, kwargs):
        """Every HF TF calling convention -> one dict of checked tensors: a dict, a list in the
        order of `input_names`, bare ids or keywords; labels may come inside the dict too."""
        names = self.input_names + self.label_names
        foreign = sorted(n for n, v in kwargs.items() if v is not None and n not in names)
        if isinstance(inputs, dict):
            foreign += sorted(n for n in inputs if n not in names and n in self.family_label_names)
        if foreign:
            raise ValueError(f"{type(self).__name__} takes no {', '.join(foreign)}; its labels are "
                             f"{list(self.label_names)}")
        values = unpack_inputs(inputs, names, kwargs)
        for name, value in values.items():
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                values[name] = ops.convert_to_tensor(value)
        ids, embeds = values.get("input_ids"), values.get("inputs_embeds")
        if ids is None and embeds is None:
            raise ValueError("input_ids (or inputs_embeds) is required")
        if ids is not None and embeds is not None:
            raise ValueError("pass input_ids or inputs_embeds, not both")
        want = "[batch, num_choices, length]" if self.input_rank == 3 else "[batch, length]"
        if ids is not None:
            if len(ids.shape) != self.input_rank:
                raise ValueError(f"input_ids must have shape {want}, got {tuple(ids.shape)}")
            if "int" not in str(ids.dtype):
                raise ValueError(f"input_ids must be integers, got dtype {ids.dtype}")
            values["input_ids"] = check_index_range("input_ids", ids, self.config.vocab_size)
        else:
            width = getattr(self.config, "embedding_size", None) or self.config.hidden_size
            if len(embeds.shape) != self.input_rank + 1:
                raise ValueError(f"inputs_embeds must have shape {want[:-1]}, {width}], got {tuple(embeds.shape)}")
            if isinstance(embeds.shape[-1], int) and embeds.shape[-1] != width:
                raise ValueError(f"inputs_embeds must have {width} features in its last axis (the width of the "
                                 f"word embeddings), got shape {tuple(embeds.shape)}")
        reference = sequence_reference(values)
        if reference.shape[-1] == 0:  # a static zero length: attention has nothing to attend to
            raise ValueError(f"the sequence length is 0 (input shape {tuple(reference.shape)}); "
                             f"give at least one token")
        for name in _INDEX_INPUTS:
            if name in values:
                check_same_shape(name, values[name], reference, reference_name=(
                    "input_ids" if ids is not None else "inputs_embeds[..., 0]"))
        values = self.check_family_inputs(values, reference)
        if any(n in values for n in self.label_names):
            self.check_labels(values)
        return values

    # --- family hooks ----------------------------------------------------------------------------
    def check_family_inputs(self, values, reference):
        """Range checks that need the family's config (token types, positions); returns values."""
        return values

    def backbone_inputs(self, values):
        """The backbone's inputs from the parsed values (multiple choice flattens the choices)."""
        return values

    def run_backbone(self, inputs, training, output_hidden_states, output_attentions):
        """-> dict(last_hidden_state, hidden_states?, attentions?)."""
        raise NotImplementedError

    # --- head hooks ------------------------------------------------------------------------------
    def head(self, sequence_output, values, training=False):
        """-> {output name: tensor} (e.g. {"logits": ...})."""
        raise NotImplementedError

    def check_labels(self, values):
        """Checks (and may normalise) the labels in `values` before the loss sees them."""

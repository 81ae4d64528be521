"""The `serving_default` signature's inputs and the TensorFlow asserts that check a request at the
export boundary (presets/export.py's docstring lists what is checked and why there)."""


def input_signature(model):
    """{name: tf.TensorSpec} of `serving_default`: int32, dynamic batch (and choices) and length."""
    import tensorflow as tf

    shape = (None,) * int(getattr(model, "input_rank", 2))
    return {name: tf.TensorSpec(shape, tf.int32, name=name) for name in model.export_input_names}


def polymorphic_shapes(model):
    """jax2tf shapes of the one (dict) argument: every input shares the symbolic batch and length."""
    dims = "(batch, choices, length)" if int(getattr(model, "input_rank", 2)) == 3 else "(batch, length)"
    return [{name: dims for name in model.export_input_names}]


def polymorphic_constraints(model):
    max_length = model.export_max_length()
    return [] if max_length is None else [f"length <= {int(max_length)}"]


def _runtime_rank(x):
    """The rank of `x` as the request gives it. A SavedModel signature does not check the shapes
    of what it is called with, and `tf.rank` of an input traced as [None, None] is folded into the
    constant 2; the length of the runtime shape is not."""
    import tensorflow as tf

    return tf.reduce_sum(tf.cast(tf.shape(x) >= 0, tf.int32))


def shape_checks(name, x, rank, what):
    """Asserts that `x` has `rank` axes and a non-empty batch (an empty one failed deep inside the
    graph, in the pooler's slice)."""
    import tensorflow as tf

    return [tf.debugging.assert_equal(_runtime_rank(x), rank, message=f"{name} must have shape {what}"),
            tf.debugging.assert_positive(tf.shape(x)[0], message=f"{name}: the batch is empty; send at least one row")]


def input_checks(model, inputs, max_length):
    """TensorFlow asserts of the signature's inputs (see the module docstring)."""
    import tensorflow as tf

    ids = inputs["input_ids"]
    rank = int(getattr(model, "input_rank", 2))
    what = "[batch, num_choices, length]" if rank == 3 else "[batch, length]"
    checks = [check for name, value in inputs.items() for check in shape_checks(name, value, rank, what)]
    checks.append(tf.debugging.assert_positive(
        tf.shape(ids)[-1], message="input_ids: the sequence length is 0; give at least one token"))
    for name, value in inputs.items():
        if name != "input_ids":
            checks.append(tf.debugging.assert_equal(
                tf.shape(value), tf.shape(ids), message=f"{name} must have the shape of input_ids"))
    for name, upper in model.export_input_limits().items():
        if name in inputs:
            value = inputs[name]
            checks.append(tf.debugging.assert_non_negative(value, message=f"{name} must be >= 0"))
            checks.append(tf.debugging.assert_less(
                value, tf.constant(int(upper), value.dtype), message=f"{name} must be < {int(upper)}"))
    checks.append(tf.debugging.assert_less_equal(
        tf.shape(ids)[-1], int(max_length),
        message=f"input_ids: sequence length must be <= {int(max_length)} (this export's max_length)"))
    return checks

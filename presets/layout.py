"""keras.distribution layout maps built from per-family rules, and the checks that keep them honest.

A model family describes how each of its variables is split as a tuple of `LayoutRule`s: a regex
over the variable's path below the model (e.g. r"model/layers_\\d+/self_attn/o_proj/kernel") and,
per dimension, the *role* of the mesh axis that splits it (MODEL, EXPERT, DATA) or None
(replicated). `layout_map_from_rules` turns roles into the caller's mesh axis names and returns a
`keras.distribution.LayoutMap` (KerasHub's `get_layout_map` convention). Rules whose path ends in
"/output" lay out a layer's output instead (Keras applies those to intermediate tensors).

`check_layout` verifies a built model against a layout map: every variable matched by exactly one
entry, and every split dimension divisible by the size of its mesh axis. A rule may also say what
a dimension counts (e.g. "attention heads"): the mesh axis must then divide that count, so a
head is never cut in two.

`LayoutMapMixin` gives a model family `get_layout_map` and turns a failure to split a variable
while the model is being built under a distribution into a `LayoutError` naming the variable.
"""

import re
import traceback
from typing import NamedTuple

import keras

# Roles of mesh axes in rules; `layout_map_from_rules` maps them to the mesh's axis names.
MODEL, EXPERT, DATA = "model", "expert", "data"

# How a Keras Dense / Embedding layer is split (see `dense_rules`, `embedding_rules`).
REPLICATED, COLUMNS, ROWS = "replicated", "columns", "rows"


class LayoutError(ValueError):
    """A variable cannot be laid out as asked (unmatched path, or an axis that does not divide)."""


class LayoutRule(NamedTuple):
    """How the variables whose path ends with `pattern` are split.

    pattern: regex over the path below the model, without anchors ("(.*/)?" is put before it).
    axes: per dimension, None (replicated) or a role (MODEL, EXPERT, DATA).
    counts: per dimension, None or the name of what the dimension counts ("attention heads"),
        which the mesh axis must divide; names index the family's `layout_counts(config)`.
    """

    pattern: str
    axes: tuple
    counts: tuple = ()


def dense_rules(pattern, split=REPLICATED, count=None):
    """Rules for a keras Dense layer (kernel [in, out]) under `pattern`, its LoRA and quantization
    variables included. `split`: COLUMNS splits the output axis (Megatron's column-parallel first
    matmul), ROWS the input axis (the row-parallel second matmul, whose partial sums XLA adds with
    one all-reduce); `count` names what the split axis counts (e.g. "attention heads")."""
    m = MODEL
    if split == COLUMNS:
        kernel, bias, lora_a, lora_b = (None, m), (m,), (None, None), (None, m)
        counts = {"kernel": (None, count), "bias": (count,), "lora_kernel_b": (None, count)}
    elif split == ROWS:
        kernel, bias, lora_a, lora_b = (m, None), (None,), (m, None), (None, None)
        counts = {"kernel": (count, None), "lora_kernel_a": (count, None)}
    elif split == REPLICATED:
        kernel, bias, lora_a, lora_b = (None, None), (None,), (None, None), (None, None)
        counts = {}
    else:
        raise ValueError(f"split must be {REPLICATED!r}, {COLUMNS!r} or {ROWS!r}, got {split!r}")
    rules = [LayoutRule(f"{pattern}/{name}", axes, counts.get(name, ()))
             for name, axes in (("kernel", kernel), ("bias", bias), ("lora_kernel_a", lora_a),
                                ("lora_kernel_b", lora_b))]
    # Quantization scales, zero points and the int4 group index are replicated: the path is the
    # same for int8 ([out]) and int4 ([groups, out]), so the layout must fit both ranks (an empty
    # layout does), and they are 1/in of the kernel's size.
    rules += [LayoutRule(f"{pattern}/{name}", ()) for name in ("kernel_scale", "kernel_zero", "g_idx")]
    return rules


def embedding_rules(pattern, split=COLUMNS):
    """Rules for a keras Embedding (embeddings [vocab, width]) under `pattern`, with its LoRA and
    quantization variables. COLUMNS splits the width (each device looks up its slice of every row:
    no vocabulary-sized collective), ROWS the vocabulary."""
    m = MODEL
    table, lora_a, lora_b = {COLUMNS: ((None, m), (None, None), (None, m)),
                             ROWS: ((m, None), (m, None), (None, None)),
                             REPLICATED: ((None, None), (None, None), (None, None))}[split]
    rules = [LayoutRule(f"{pattern}/embeddings", table), LayoutRule(f"{pattern}/lora_embeddings_a", lora_a),
             LayoutRule(f"{pattern}/lora_embeddings_b", lora_b)]
    # Per-row scales ([vocab] int8, [vocab, groups] int4), zero points and group index: replicated.
    rules += [LayoutRule(f"{pattern}/{name}", ()) for name in ("embeddings_scale", "embeddings_zero", "g_idx")]
    return rules


def replicated_rules(pattern, names, rank=1):
    """Rules replicating the variables `names` (rank `rank`) under `pattern` (norms, small tables)."""
    return [LayoutRule(f"{pattern}/{name}", (None,) * rank) for name in names]


# Dropout layers keep their RNG state in a variable outside the model's path; every device holds it.
SEED_GENERATOR_RULES = [LayoutRule(r"seed_generator(_\d+)?/seed_generator_state", (None,))]


def layout_map_from_rules(device_mesh, rules, *, model, data=None, expert=None):
    """A `keras.distribution.LayoutMap` on `device_mesh` from family rules.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh`.
        rules: iterable of `LayoutRule`.
        model: the mesh axis that splits MODEL dimensions (tensor parallelism).
        data: the batch axis that DATA dimensions (activation layouts) use; None, or a name the
            mesh lacks (a 1-D "model" mesh), leaves them unsplit.
        expert: the mesh axis that splits EXPERT dimensions (default: `model`).
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise TypeError(f"device_mesh must be a keras.distribution.DeviceMesh, got {type(device_mesh).__name__}")
    axis_names = tuple(device_mesh.axis_names)
    roles = {MODEL: model, EXPERT: expert or model, DATA: data if data in axis_names else None}
    for role in (MODEL, EXPERT):
        if roles[role] not in axis_names:
            raise LayoutError(f"the {role} axis {roles[role]!r} is not an axis of the device mesh "
                              f"{dict(zip(axis_names, device_mesh.shape))}")
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for rule in rules:
        layout_map["(.*/)?" + rule.pattern] = tuple(roles[a] if a else None for a in rule.axes)
    return layout_map


# --- checks ----------------------------------------------------------------------------------------
def _mesh_sizes(layout):
    mesh = layout.device_mesh
    return dict(zip(mesh.axis_names, mesh.shape))


def split_problems(path, shape, layout, counts=(), count_values=None):
    """Why a variable of `shape` cannot be split as `layout` says ([] when it can)."""
    problems = []
    axes = tuple(layout.axes)
    if len(axes) > len(shape):  # fewer entries than dimensions: the rest are replicated
        return [f"{path} has shape {tuple(shape)} but its layout {axes} has {len(axes)} entries"]
    sizes = _mesh_sizes(layout)
    for dim, (axis, size) in enumerate(zip(axes, shape)):
        devices = sizes.get(axis, 1) if axis else 1
        if devices == 1:
            continue
        count_name = counts[dim] if dim < len(counts) else None
        count = (count_values or {}).get(count_name) if count_name else None
        if size % devices:
            problems.append(f"{path} {tuple(shape)}: mesh axis {axis!r} has {devices} devices, which does not "
                            f"divide dimension {dim} of size {size}")
        elif count is not None and count % devices:
            problems.append(f"{path} {tuple(shape)}: mesh axis {axis!r} has {devices} devices, which does not "
                            f"divide the {count} {count_name} along dimension {dim}")
    return problems


def _rule_for(path, rules):
    for rule in rules:
        if re.fullmatch("(.*/)?" + rule.pattern, path):
            return rule
    return None


def check_layout(model, layout_map, *, rules=(), count_values=None, complete=True):
    """Raises LayoutError if `layout_map` does not fit the built `model`.

    Every variable must be matched by exactly one variable entry of `layout_map` (with `complete`;
    otherwise unmatched variables are replicated, as Keras does), and every split dimension must be
    divisible by its mesh axis, and divide the count (e.g. heads) a family rule gives it.
    """
    problems, unmatched = [], []
    for variable in model.variables:
        try:
            layout = layout_map[variable.path]
        except ValueError as error:  # Keras: the path matches several entries
            problems.append(str(error))
            continue
        if layout is None:
            unmatched.append(f"{variable.path} {tuple(variable.shape)}")
            continue
        rule = _rule_for(variable.path, rules)
        problems += split_problems(variable.path, variable.shape, layout, rule.counts if rule else (), count_values)
    if complete and unmatched:
        problems.insert(0, f"{len(unmatched)} variables match no layout-map entry: " + ", ".join(unmatched))
    if problems:
        raise LayoutError("the layout map does not fit the model: " + "; ".join(problems))


def _variable_being_created(error):
    """The Keras variable whose creation raised `error`, if any.

    Keras creates a variable and places it on the mesh in one call (`Variable.__init__` ->
    `jax.device_put`), and JAX's error names only the shape. No public hook sees a variable's path
    and layout before JAX places it, so the variable is read from the traceback: the `self` of the
    innermost Keras Variable frame.
    """
    found = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.Variable):
            found = candidate
    return found


def build_checking_layouts(model, build):
    """Runs `build()` (creating `model`'s variables); under a distribution, a variable that cannot
    be split as its layout says raises a LayoutError naming it (JAX's own error names only a
    shape), and after the build every variable is checked against the family's counts (heads,
    experts)."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return build()
    counts = model.layout_counts(model.config)
    try:
        result = build()
    except ValueError as error:
        variable = _variable_being_created(error)
        if variable is None or isinstance(error, LayoutError):
            raise
        rule = _rule_for(variable.path, model.layout_rules)
        layout = distribution.get_variable_layout(variable)
        problems = split_problems(variable.path, variable.shape, layout, rule.counts if rule else (), counts)
        if not problems:
            raise
        raise LayoutError(f"cannot build {type(model).__name__} under {type(distribution).__name__}: "
                          + "; ".join(problems)) from error
    problems = []
    for variable in model.variables:
        rule = _rule_for(variable.path, model.layout_rules)
        if rule is not None and rule.counts:
            layout = distribution.get_variable_layout(variable)
            problems += split_problems(variable.path, variable.shape, layout, rule.counts, counts)
    if problems:
        raise LayoutError(f"cannot split {type(model).__name__} under {type(distribution).__name__}: "
                          + "; ".join(problems))
    return result


class LayoutMapMixin:
    """`get_layout_map` for a model family (KerasHub's convention), from its `layout_rules`.

    The family sets `layout_rules` (a tuple of LayoutRule covering every variable of every task
    model and variant) and `layout_counts(config)` ({count name: value}, e.g. {"attention heads":
    12}). The model's build runs through `build_checking_layouts`, so that, under a distribution,
    a variable that its layout cannot split raises a LayoutError naming the variable and the sizes.
    """

    layout_rules = ()

    @staticmethod
    def layout_counts(config):
        return {}

    @classmethod
    def get_layout_map(cls, device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch",
                       expert_parallel_dim_name=None):
        """A `keras.distribution.LayoutMap` covering every variable of this model class.

        Args:
            device_mesh: `keras.distribution.DeviceMesh`, e.g. shape (2, 4), axes ("batch", "model").
            model_parallel_dim_name: the mesh axis for tensor parallelism (attention heads, FFN
                width, embedding width, vocabulary of output heads).
            data_parallel_dim_name: the mesh axis the batch is split on (Keras' `batch_dim_name`);
                weights are replicated along it.
            expert_parallel_dim_name: the mesh axis routed experts are split on (default: the
                model axis), each device holding num_experts / axis size of them.

        Use it with `keras.distribution.ModelParallel(layout_map=..., batch_dim_name=...)` and create
        (or load) the model inside that distribution's scope.
        """
        return layout_map_from_rules(device_mesh, cls.layout_rules, model=model_parallel_dim_name,
                                     data=data_parallel_dim_name, expert=expert_parallel_dim_name)

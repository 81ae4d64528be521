"""transformers' loading keywords (`token`, `cache_dir`, `revision`, `local_files_only`,
`force_download`, `subfolder`, `from_pt` / `from_tf` / `use_safetensors`, `trust_remote_code`),
recognised by every `from_pretrained` of models, configs and tokenizers.

They say where and how to fetch a checkpoint, never what it is: they go to the Hub download
(presets/hub.py) and are never stored in a config, so a Hub token never reaches a saved checkpoint.
"""

import inspect
import os
import warnings

from presets.errors import CheckpointNotFoundError
from presets.hub import resolve_checkpoint_dir

# Passed to huggingface_hub's download (and `subfolder` to the path inside the checkpoint).
HUB_KEYWORDS = ("token", "cache_dir", "revision", "local_files_only", "force_download", "subfolder", "proxies")
# Accepted with no effect: the weights' format is read from the files (safetensors first, then
# pytorch_model.bin, then tf_model.h5), and the architecture is built into this package.
FORMAT_KEYWORDS = ("from_pt", "from_tf", "from_flax", "use_safetensors", "resume_download")
LOADING_KEYWORDS = HUB_KEYWORDS + FORMAT_KEYWORDS + ("use_auth_token", "trust_remote_code")


def pop_loading_options(kwargs):
    """Removes the loading keywords from `kwargs` (in place) and returns the Hub download's options
    ({name: value}, the unset ones left out). `use_auth_token` is transformers' older `token`."""
    options = hub_options_of(kwargs)
    if kwargs.get("trust_remote_code"):
        warnings.warn("trust_remote_code=True has no effect: the architecture is built into this package and "
                      "no code from a checkpoint is ever run", stacklevel=3)
    for name in LOADING_KEYWORDS:
        kwargs.pop(name, None)
    return options


def hub_options_of(kwargs):
    """The Hub download's options among `kwargs` (left as they are), the unset ones left out."""
    options = {name: kwargs[name] for name in HUB_KEYWORDS if name in kwargs}
    legacy_token = kwargs.get("use_auth_token")
    if legacy_token is not None:
        if options.get("token") is not None and options["token"] != legacy_token:
            raise ValueError("token= and use_auth_token= (its older name) disagree; pass token only")
        options["token"] = legacy_token
    return {name: value for name, value in options.items() if value not in (None, False, "")}


def refuse_unknown_keywords(config, keywords, caller):
    """TypeError naming every keyword of `caller` that is neither a field of `config` nor a
    parameter of its class (transformers passes those to the model's constructor, which refuses
    them; a config would otherwise store them and write them into every saved checkpoint)."""
    parameters = set()
    for klass in type(config).__mro__:
        if "__init__" in vars(klass):
            parameters.update(inspect.signature(klass.__init__).parameters)
    parameters -= {"self", "kwargs"}
    unknown = sorted(k for k in keywords if k not in parameters and not hasattr(config, k))
    if unknown:
        raise TypeError(f"{caller} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: neither a "
                        f"{type(config).__name__} field nor a loading option ({', '.join(LOADING_KEYWORDS)})")


def resolve_tokenizer_dir(name_or_path, kwargs, error):
    """The local directory of a tokenizer (a directory, its `subfolder`, or a Hub id through the
    Hub cache), the loading keywords popped from `kwargs`; `error` (the family's TokenizerFileError)
    when there is none."""
    hub_options = pop_loading_options(kwargs)
    try:
        return resolve_checkpoint_dir(os.fspath(name_or_path), **hub_options)
    except CheckpointNotFoundError as e:
        raise error(f"tokenizer directory not found: {e}") from None

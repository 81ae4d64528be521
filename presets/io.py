"""Crash-safe writes: write to a temporary name in the same directory, then rename over."""

import contextlib
import json
import os
import re
import tempfile


def _temporary_prefix(path):
    return "." + os.path.basename(path) + "."


def remove_stale_temporaries(path, suffix=""):
    """Deletes temporaries that an interrupted save of `path` left behind (a crash skips the
    cleanup below). They are hidden and never read, so a save would also work beside them."""
    remove_stale_temporaries_in(os.path.dirname(os.path.abspath(path)), re.escape(os.path.basename(path)), suffix)


def remove_stale_temporaries_in(directory, name_pattern, suffix=""):
    """Deletes the temporaries of interrupted saves of every file in `directory` whose name
    matches the regex `name_pattern` (e.g. every shard name, whatever the earlier shard count)."""
    temporary = re.compile(r"^\.(?:" + name_pattern + r")\..*\.tmp" + re.escape(suffix) + "$", re.DOTALL)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if temporary.match(name):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path`; on success it replaces `path`, on error it vanishes.

    A crash mid-write therefore never leaves a half-written file under the final name; the
    temporaries such crashes left are removed first. `suffix` ends the temporary name, for writers
    that insist on an extension (Keras wants ".keras").
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp" + suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; a saved checkpoint gets the permissions open() would give (umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def read_json_object(path, error=ValueError):
    """The JSON object in `path`; `error(message naming the file)` if it is not valid JSON or not
    an object (config.json, tokenizer_config.json, generation_config.json all must be objects)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON: {e}") from None
    except RecursionError:  # the parser recurses once per nesting level
        raise error(f"{path} nests JSON deeper than Python's recursion limit; no config is that deep") from None
    if not isinstance(data, dict):
        raise error(f"{path} does not hold a JSON object")
    return data

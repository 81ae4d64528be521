"""The family-independent half of a model package's command line (`python -m keras_deepseek ...`,
`python -m keras_deberta ...`).

A family supplies a `CliFamily` (its program name, tasks, a pipeline factory and a model loader,
optionally extra `run` options); this module does the rest:

    run      --task T --model M [--tokenizer TOK] [--batch-size N] [TEXT ...]
             Runs the family's pipeline on each TEXT, or on every non-blank stdin line when no
             TEXT is given (as `transformers run` reads stdin), and prints one JSON line per input:
             the pipeline's result for it, in input order. A progress bar goes to stderr for stdin
             jobs when stderr is a terminal (`--progress` forces it, `--no-progress` hides it).
    convert  --model M --output OUT [--format keras|saved_model] [--task T]
             Loads the checkpoint (directory or Hub id) and writes a `.keras` file or a TensorFlow
             SavedModel (through `model.export(OUT)`).
    export   --model M --output OUT [--task T]
             `convert --format saved_model`.

Errors the user can fix (bad checkpoint, unknown task, bad arguments, bad input text) end the
process with exit status 1 (2 for argument errors, as argparse does) and one `prog: error: ...`
line on stderr, without a traceback; `--debug` (or KERAS_CLI_DEBUG=1) re-raises to show it.
This module imports no model family: loaders and factories come in as arguments.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Callable, Optional, Sequence

from presets.errors import CheckpointError

# Exit statuses: argparse uses 2 for usage errors; 1 is a failure the message explains.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FORMATS = ("keras", "saved_model")


class CliError(Exception):
    """A failure to report as one line on stderr (no traceback)."""


@dataclasses.dataclass
class CliFamily:
    """What a model family plugs into the generic command line.

    Attributes:
        prog: the program name shown in usage and error lines (e.g. "keras_deepseek").
        description: one paragraph for `--help`.
        tasks: the task names `run --task` accepts; the first is the default of `convert --task`.
        make_pipeline: `(task, model=..., tokenizer=...) -> callable`; the callable takes a list of
            texts plus the keyword arguments `call_options` returns, and returns one result per text.
        load_model: `(task, model_name) -> keras.Model` for `convert` / `export`.
        add_run_arguments: optional `(parser) -> None` adding family-specific `run` options.
        call_options: optional `(args) -> dict` turning those options into pipeline keyword arguments.
        user_errors: exception types whose message is shown as is (CheckpointError, ValueError,
            FileNotFoundError, CliError are always included).
    """

    prog: str
    description: str
    tasks: Sequence[str]
    make_pipeline: Callable
    load_model: Callable
    add_run_arguments: Optional[Callable] = None
    call_options: Optional[Callable] = None
    user_errors: tuple = ()
    load_tokenizer: Optional[Callable] = None  # (model_name) -> tokenizer, for export --with-tokenizer


def build_parser(family):
    # argparse reports its own usage errors (one line, exit status 2).
    parser = argparse.ArgumentParser(prog=family.prog, description=family.description)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", metavar="{run,convert,export}")
    commands.required = True

    run = commands.add_parser("run", help="run a pipeline on texts (arguments or stdin lines); prints JSON lines")
    run.add_argument("--task", required=True, help=f"one of: {', '.join(family.tasks)}")
    run.add_argument("--model", default=None,
                     help="checkpoint directory or Hugging Face Hub id (default: the family's built-in "
                          "model for the task, where it has one)")
    run.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's)")
    run.add_argument("--batch-size", type=_positive_int, default=8,
                     help="texts per pipeline call (default 8)")
    progress = run.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show a progress bar on stderr")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show a progress bar")
    if family.add_run_arguments is not None:
        family.add_run_arguments(run)
    run.add_argument("texts", nargs="*", metavar="TEXT", help="inputs; without any, one per stdin line")

    for name, help_text in (("convert", "convert a checkpoint to a .keras file or a TensorFlow SavedModel"),
                            ("export", "export a checkpoint as a TensorFlow SavedModel "
                                       "(convert --format saved_model)")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--model", required=True, help="checkpoint directory or Hugging Face Hub id")
        sub.add_argument("--output", required=True, help="the .keras file or SavedModel directory to write")
        sub.add_argument("--task", default=family.tasks[0],
                         help=f"which model head to build: one of {', '.join(family.tasks)} "
                              f"(default {family.tasks[0]})")
        if name == "convert":
            sub.add_argument("--format", choices=FORMATS, default="keras", help="output format (default keras)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output")
        if family.load_tokenizer is not None:
            sub.add_argument("--with-tokenizer", action="store_true",
                             help="SavedModel: add string-in signatures that tokenise inside the graph")
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# --- inputs and outputs --------------------------------------------------------------------------
def read_texts(texts, stdin=None):
    """The positional texts, or every non-blank stdin line (newline stripped) when there are none."""
    if texts:
        return list(texts)
    stdin = sys.stdin if stdin is None else stdin
    return [line.rstrip("\r\n") for line in stdin if line.strip()]


def _to_json_value(value):
    # Pipelines return numpy scalars / arrays in places (scores, ids); JSON wants plain Python.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def print_json_line(value, stream=None):
    stream = sys.stdout if stream is None else stream
    stream.write(json.dumps(value, ensure_ascii=False, default=_to_json_value) + "\n")
    stream.flush()  # a consumer reading the pipe sees each result as soon as it exists


def batches(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def progress_bar(total, enabled, desc):
    """A tqdm bar on stderr; `enabled=None` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=(not sys.stderr.isatty()) if enabled is None else not enabled,
                file=sys.stderr, desc=desc, unit="text", dynamic_ncols=True)


# --- commands ------------------------------------------------------------------------------------
def command_run(family, args, stdin=None, stdout=None):
    if args.task not in family.tasks:
        raise CliError(f"unknown task {args.task!r}; {family.prog} supports: {', '.join(family.tasks)}")
    from_stdin = not args.texts
    texts = read_texts(args.texts, stdin)
    if not texts:
        raise CliError("no input: give TEXT arguments or pipe one text per line on stdin")
    pipe = family.make_pipeline(args.task, model=args.model, tokenizer=args.tokenizer)
    options = family.call_options(args) if family.call_options is not None else {}
    # Stdin jobs can be long: a bar when stderr is a terminal; for TEXT arguments only on request.
    with progress_bar(len(texts), args.progress if from_stdin else bool(args.progress), desc=args.task) as bar:
        for chunk in batches(texts, args.batch_size):
            results = pipe(list(chunk), **options)
            if len(results) != len(chunk):
                raise RuntimeError(f"the pipeline returned {len(results)} results for {len(chunk)} inputs")
            for result in results:
                print_json_line(result, stdout)
            bar.update(len(chunk))
    return EXIT_OK


def check_output(path, output_format, overwrite=False):
    """Refuses an output path before any model is loaded (loading takes a while)."""
    if output_format == "keras" and not path.endswith(".keras"):
        raise CliError(f"a Keras model file must end in .keras, got {path!r}")
    if os.path.lexists(path) and not overwrite:
        raise CliError(f"{path} already exists; pass --overwrite to replace it")
    if output_format == "keras" and os.path.isdir(path):
        raise CliError(f"{path} is a directory")


def save_keras_file(model, path, overwrite=False):
    """`model.save(path)` through a temporary file beside `path`, renamed into place at the end."""
    check_output(path, "keras", overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)
    try:
        staged = os.path.join(staging, os.path.basename(path))  # Keras insists on the .keras suffix
        model.save(staged)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def command_convert(family, args, output_format):
    if args.task not in family.tasks:
        raise CliError(f"unknown task {args.task!r}; {family.prog} supports: {', '.join(family.tasks)}")
    check_output(args.output, output_format, args.overwrite)
    model = family.load_model(args.task, args.model)
    if output_format == "keras":
        save_keras_file(model, args.output, overwrite=args.overwrite)
    else:
        options = {"overwrite": True} if args.overwrite else {}
        if getattr(args, "with_tokenizer", False):
            options["preprocessor"] = family.load_tokenizer(args.model)
        model.export(args.output, **options)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def main(family, argv=None, stdin=None, stdout=None):
    """Parses `argv` (default sys.argv[1:]), runs the command and returns the exit status."""
    parser = build_parser(family)
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("KERAS_CLI_DEBUG") == "1"
    user_errors = (CliError, CheckpointError, ValueError, FileNotFoundError, NotADirectoryError,
                   IsADirectoryError) + tuple(family.user_errors)
    try:
        if args.command == "run":
            return command_run(family, args, stdin=stdin, stdout=stdout)
        output_format = "saved_model" if args.command == "export" else args.format
        return command_convert(family, args, output_format)
    except user_errors as e:
        if debug:
            raise
        print(f"{family.prog}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{family.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        return EXIT_OK

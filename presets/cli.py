"""The family-independent half of a model package's command line (`python -m keras_deepseek ...`,
`python -m keras_deberta ...`).

A family supplies a `CliFamily` (its program name, tasks, a pipeline factory and a model loader,
optionally extra `run` options); this module does the rest:

    run      --task T --model M [--tokenizer TOK] [--batch-size N] [--on-error continue|stop] [TEXT ...]
             Runs the family's pipeline on each TEXT, or on every stdin line when no TEXT is given
             (as `transformers run` reads stdin), and prints one JSON line per input, in input
             order: the pipeline's result, or an error record {"error": message, "line": n} for an
             input that cannot run (an empty line, bytes that are not UTF-8, a line longer than
             --max-line-bytes, a text the pipeline refuses). `n` is the stdin line number (or the
             TEXT's position), so output line n always answers input line n. With
             `--on-error stop` the first bad input ends the run instead (the results before it are
             printed). Stdin is read in batches as it arrives. A progress bar goes to stderr for
             stdin jobs when stderr is a terminal (`--progress` forces it, `--no-progress` hides it).
    convert  --model M --output OUT [--format keras|saved_model|hf] [--task T] [--dtype D]
             [--max-shard-size S]
             Loads the checkpoint (directory or Hub id) in dtype D (auto, float32, bfloat16, ...;
             default: the Keras policy, float32) and writes a `.keras` file, a TensorFlow
             SavedModel (through `model.export(OUT)`) or an HF checkpoint directory
             (`save_pretrained(OUT, max_shard_size=S)`, default 5GB shards).
    export   --model M --output OUT [--format saved_model|onnx|openvino|litert] [--task T]
             [--with-tokenizer]
             A TensorFlow SavedModel (`convert --format saved_model`), or its serving signature
             converted for onnxruntime, OpenVINO or LiteRT (`model.export(OUT, format=...)`).

Every error is one `prog: error: ...` line on stderr, without a traceback: exit status 1 (2 for
argument errors, as argparse's convention), 130 on Ctrl-C; `--debug` (or KERAS_CLI_DEBUG=1)
re-raises to show the traceback. A run in which some inputs failed exits 1 after its last line,
with one stderr line counting them. An output path that cannot be written is refused before any
model is loaded. This module imports no model family: loaders and factories come in as arguments.
"""

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import sys
import tempfile
from typing import Callable, Optional, Sequence

from presets.errors import CheckpointError
from presets.tokenizer_types import TokenizerFileError
from presets.writers import parse_size

# Exit statuses: argparse uses 2 for usage errors; 1 is a failure the message explains.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("keras", "saved_model", "hf")
# `export --format`: a TensorFlow SavedModel, or its serving signature converted for a runtime.
EXPORT_FORMATS = ("saved_model", "onnx", "openvino", "litert")
ON_ERROR = ("continue", "stop")
# One stdin line is read into memory whole; longer lines are skipped (with an error record) rather
# than read. 1 MiB is some 250k tokens, far past any model's length: the bound is on memory.
DEFAULT_MAX_LINE_BYTES = 1 << 20


class CliError(Exception):
    """A failure to report as one line on stderr (no traceback)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one `prog: error: ...` line (exit status 2), like every other
    error of the command line."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


@dataclasses.dataclass
class CliFamily:
    """What a model family plugs into the generic command line.

    Attributes:
        prog: the program name shown in usage and error lines (e.g. "keras_deepseek").
        description: one paragraph for `--help`.
        tasks: the task names `run --task` accepts; the first is the default of `convert --task`.
        make_pipeline: `(task, model=..., tokenizer=...) -> callable`; the callable takes a list of
            texts plus the keyword arguments `call_options` returns, and returns one result per text.
        load_model: `(task, model_name, **options) -> keras.Model` for `convert` / `export` (options: dtype=).
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
    save_tokenizer: Optional[Callable] = None  # (model_name, directory) -> None, for convert --format hf


def build_parser(family):
    # argparse reports its own usage errors (one line, exit status 2).
    parser = OneLineArgumentParser(prog=family.prog, description=family.description)
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
    run.add_argument("--on-error", choices=ON_ERROR, default="continue",
                     help="an input that cannot run: write an error record for it and go on (continue, the "
                          "default), or stop there")
    run.add_argument("--max-line-bytes", type=_positive_int, default=DEFAULT_MAX_LINE_BYTES,
                     help=f"longest stdin line read (default {DEFAULT_MAX_LINE_BYTES}); a longer one gets an "
                          "error record")
    progress = run.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show a progress bar on stderr")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="never show a progress bar")
    if family.add_run_arguments is not None:
        family.add_run_arguments(run)
    run.add_argument("texts", nargs="*", metavar="TEXT", help="inputs; without any, one per stdin line")

    for name, help_text in (("convert", "convert a checkpoint to a .keras file or a TensorFlow SavedModel"),
                            ("export", "export a checkpoint for serving: a TensorFlow SavedModel, "
                                       "or ONNX / OpenVINO / LiteRT")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--model", required=True, help="checkpoint directory or Hugging Face Hub id")
        sub.add_argument("--output", required=True, help="the .keras file or SavedModel directory to write")
        sub.add_argument("--task", default=family.tasks[0],
                         help=f"which model head to build: one of {', '.join(family.tasks)} "
                              f"(default {family.tasks[0]})")
        if name == "convert":
            sub.add_argument("--format", choices=FORMATS, default="keras",
                             help="output format (default keras; hf: config.json + safetensors for transformers)")
            sub.add_argument("--max-shard-size", default="5GB",
                             help="--format hf: largest weights file, e.g. 5GB or 500MB (default 5GB)")
        else:
            sub.add_argument("--format", choices=EXPORT_FORMATS, default="saved_model",
                             help="saved_model (default; TF Serving), or onnx / openvino / litert: the "
                                  "int32 serving signature converted for that runtime (a directory)")
        sub.add_argument("--dtype", default=None,
                         help="load the weights as: auto (the checkpoint's own dtype), float32, bfloat16, float16, "
                              "mixed_bfloat16 or mixed_float16 (default: the Keras policy, float32)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output")
        if family.load_tokenizer is not None:
            sub.add_argument("--with-tokenizer", action="store_true",
                             help="SavedModel: add string-in signatures that tokenise inside the graph; "
                                  "onnx / openvino / litert: save the tokenizer beside the model")
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
@dataclasses.dataclass
class InputLine:
    """One input: its 1-based number (stdin line or TEXT position) and its text, or why it has none."""

    number: int
    text: Optional[str] = None
    error: Optional[str] = None


def read_inputs(texts, stdin=None, max_line_bytes=DEFAULT_MAX_LINE_BYTES):
    """The TEXT arguments, else every stdin line (newline stripped), as InputLines, lazily.

    Stdin is read as bytes and decoded line by line, so one line that is not UTF-8 is reported
    with its number instead of failing the stream; an empty line is an error, never skipped (output
    line n answers input line n)."""
    if texts:
        for number, text in enumerate(texts, 1):
            yield InputLine(number, text) if text else InputLine(number, error="empty text argument")
        return
    stream = sys.stdin if stdin is None else stdin
    source = getattr(stream, "buffer", stream)  # bytes when the stream has them (sys.stdin does)
    number = 0
    while True:
        line = source.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        newline = "\n" if isinstance(line, str) else b"\n"
        if len(line) > max_line_bytes and not line.endswith(newline):
            while line and not line.endswith(newline):  # skip the rest of the line, a bounded piece at a time
                line = source.readline(max_line_bytes + 1)
            yield InputLine(number, error=f"line longer than {max_line_bytes} bytes (--max-line-bytes)")
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield InputLine(number, error=f"not UTF-8: byte 0x{line[error.start]:02x} at byte {error.start + 1}")
                continue
        text = line.rstrip("\r\n")
        yield InputLine(number, text) if text else InputLine(number, error="empty line")


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
    """Lists of up to `size` items of an iterable, as they come."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def progress_bar(total, enabled, desc):
    """A tqdm bar on stderr; `enabled=None` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=(not sys.stderr.isatty()) if enabled is None else not enabled,
                file=sys.stderr, desc=desc, unit="text", dynamic_ncols=True)


# --- commands ------------------------------------------------------------------------------------
class _RunStopped(Exception):
    """--on-error stop met a bad input; the message names it."""


def error_record(item, message):
    return {"error": message, "line": item.number}


def _answer_batch(pipe, batch, options, user_errors):
    """[(InputLine, result or None, error message or None)] for a batch, in order.

    The batch's texts go to the pipeline in one call; if the pipeline refuses that call, each text
    is run alone so only the texts at fault get an error record."""
    runnable = [item for item in batch if item.error is None]
    results = {}
    if runnable:
        try:
            answers = pipe([item.text for item in runnable], **options)
            if len(answers) != len(runnable):
                raise RuntimeError(f"the pipeline returned {len(answers)} results for {len(runnable)} inputs")
            results = {item.number: (answer, None) for item, answer in zip(runnable, answers)}
        except user_errors:
            for item in runnable:
                try:
                    results[item.number] = (pipe([item.text], **options)[0], None)
                except user_errors as error:
                    results[item.number] = (None, str(error))
    return [(item, *results.get(item.number, (None, item.error))) for item in batch]


def command_run(family, args, stdin=None, stdout=None, user_errors=(CliError, ValueError)):
    if args.task not in family.tasks:
        raise CliError(f"unknown task {args.task!r}; {family.prog} supports: {', '.join(family.tasks)}")
    from_stdin = not args.texts
    inputs = read_inputs(args.texts, stdin, args.max_line_bytes)
    first = next(inputs, None)  # before the model loads: nothing to do is an error, and a quick one
    if first is None:
        raise CliError("no input: give TEXT arguments or pipe one text per line on stdin")
    pipe = family.make_pipeline(args.task, model=args.model, tokenizer=args.tokenizer)
    options = family.call_options(args) if family.call_options is not None else {}
    failed, first_failure = 0, None
    total = None if from_stdin else len(args.texts)
    # Stdin jobs can be long: a bar when stderr is a terminal; for TEXT arguments only on request.
    with progress_bar(total, args.progress if from_stdin else bool(args.progress), desc=args.task) as bar:
        for batch in batches(itertools.chain([first], inputs), args.batch_size):
            for item, result, error in _answer_batch(pipe, batch, options, user_errors):
                if error is None:
                    print_json_line(result, stdout)
                    continue
                if args.on_error == "stop":
                    raise _RunStopped(f"line {item.number}: {error}")
                failed += 1
                first_failure = first_failure or f"line {item.number}: {error}"
                print_json_line(error_record(item, error), stdout)
            bar.update(len(batch))
    if failed:
        raise CliError(f"{failed} input(s) failed (error records on stdout); the first: {first_failure}")
    return EXIT_OK


def check_output(path, output_format, overwrite=False):
    """Refuses an output path before any model is loaded (loading takes a while)."""
    if output_format == "keras" and not path.endswith(".keras"):
        raise CliError(f"a Keras model file must end in .keras, got {path!r}")
    if os.path.lexists(path) and not overwrite:
        raise CliError(f"{path} already exists; pass --overwrite to replace it")
    if output_format == "keras" and os.path.isdir(path):
        raise CliError(f"{path} is a directory")
    check_writable_parent(path)


def check_writable_parent(path):
    """The output is staged beside `path` and renamed into place: its directory (or the nearest one
    that exists, below which the missing ones will be made) must take a new file. Tried, not
    inferred from permission bits: those say nothing about read-only mounts, and root ignores them."""
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(directory):
        directory = os.path.dirname(directory)
    if not os.path.isdir(directory):
        raise CliError(f"cannot write {path}: {directory} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise CliError(f"cannot write {path}: {directory} does not take new files ({error.strerror})") from None


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
    if output_format == "hf":
        parse_size(args.max_shard_size)  # refused before the (long) load
    preprocessor = None
    if output_format in EXPORT_FORMATS and getattr(args, "with_tokenizer", False):
        # Before the (long) model load: a tokenizer that cannot be used (in the graph, for a
        # SavedModel) is refused first.
        preprocessor = family.load_tokenizer(args.model)
    model = family.load_model(args.task, args.model, **({"dtype": args.dtype} if args.dtype else {}))
    if output_format == "keras":
        save_keras_file(model, args.output, overwrite=args.overwrite)
    elif output_format == "hf":
        model.save_pretrained(args.output, max_shard_size=args.max_shard_size)
        if family.save_tokenizer is not None:  # a checkpoint directory is model and tokenizer
            try:
                family.save_tokenizer(args.model, args.output)
            except TokenizerFileError as error:
                print(f"note: no tokenizer written ({one_line(error, known=True)})", file=sys.stderr)
    else:
        options = {"overwrite": True} if args.overwrite else {}
        if output_format != "saved_model":
            options["format"] = output_format
        if preprocessor is not None:
            options["preprocessor"] = preprocessor
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
            return command_run(family, args, stdin=stdin, stdout=stdout, user_errors=user_errors)
        output_format = args.format
        return command_convert(family, args, output_format)
    except KeyboardInterrupt:
        print(f"{family.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        return EXIT_OK
    except Exception as error:  # every error is one line; --debug shows where it came from
        if debug:
            raise
        print(f"{family.prog}: error: {one_line(error, known=isinstance(error, user_errors + (_RunStopped,)))}",
              file=sys.stderr)
        return EXIT_FAILURE


def one_line(error, known):
    """An exception as one line: its message (with its type, unless it is an error the user can
    fix), the first line of a longer message and a pointer to the rest."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    message = lines[0].strip() if lines else ""
    if message.endswith(":") and len(lines) > 1:
        # TensorFlow's graph errors open with "in user code:" and a traceback; the cause is last.
        message, lines = lines[-1].strip(), lines[::-1]
    if not known:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if len(lines) > 1:
        message += f" ({len(lines) - 1} more line(s): --debug shows them)"
    elif not known:
        message += " (--debug shows the traceback)"
    return message

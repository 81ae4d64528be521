"""`python -m keras_deberta`: run a pipeline, convert or export DeBERTa checkpoints.

    python -m keras_deberta run --task text-classification "A delight."   # the embedded default model
    python -m keras_deberta run --task fill-mask --model DIR_OR_HUB_ID "Paris is the [MASK] of France."
    cat texts.txt | python -m keras_deberta run --task ner --model DIR      # one text a line, one JSON line out
    python -m keras_deberta run --task question-answering --model DIR --question "Who?" "context ..."
    echo '{"question": "Who?", "context": "..."}' | python -m keras_deberta run --task question-answering --model DIR
    python -m keras_deberta run --task zero-shot-classification --model NLI_DIR --candidate-labels a,b "text"
    python -m keras_deberta convert --model DIR --task text-classification --output model.keras
    python -m keras_deberta export --model DIR --task text-classification --output saved/1 [--with-tokenizer]

Texts longer than the model takes (its tokenizer's model_max_length, 512 for DeBERTa checkpoints)
are truncated; `--no-truncation` gives them an error record instead. The generic parts (commands,
stdin, JSON lines, error records, progress, errors) are presets/cli.py.
"""

import json
import sys

from presets.cli import CliError, CliFamily, main as cli_main

TASKS = ("text-classification", "fill-mask", "token-classification", "question-answering",
         "zero-shot-classification", "sentiment-analysis", "ner")


def load_model(task, name_or_path, **options):
    from keras_deberta.pipelines import TASK_ALIASES, load_model_for_task

    return load_model_for_task(TASK_ALIASES.get(task, task), name_or_path, **options)[0]


def load_tokenizer(name_or_path):
    from keras_deberta.pipelines import checkpoint_model_type, load_tokenizer as load
    from presets.hub import resolve_checkpoint_dir

    directory = resolve_checkpoint_dir(name_or_path)
    return load(directory, checkpoint_model_type(directory))


def load_in_graph_tokenizer(name_or_path):
    """For export --with-tokenizer: a tokenizer that cannot run in the graph is refused before
    the model loads."""
    from keras_deberta.preprocessing import check_in_graph

    tokenizer = load_tokenizer(name_or_path)
    check_in_graph(tokenizer)
    return tokenizer


def save_tokenizer(name_or_path, directory):
    load_tokenizer(name_or_path).save_pretrained(directory)


def _question_answering(pipe):
    """Texts are contexts (with --question) or JSON objects {"question", "context"}."""

    def run(texts, question=None, **options):
        pairs = []
        for text in texts:
            if text.lstrip().startswith("{"):
                try:
                    item = json.loads(text)
                except json.JSONDecodeError as error:
                    raise CliError(f"not a JSON object: {text[:60]!r} ({error})") from None
                if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("question", "context")):
                    raise CliError('a JSON input needs "question" and "context", both strings')
                pairs.append((item["question"], item["context"]))
            elif question is None:
                raise CliError("question-answering needs --question, or JSON lines {\"question\", \"context\"}")
            else:
                pairs.append((question, text))
        return [pipe(question=q, context=c, **options) for q, c in pairs]

    return run


def make_pipeline(task, model=None, tokenizer=None):
    from keras_deberta.pipelines import pipeline

    pipe = pipeline(task, model=model, tokenizer=tokenizer)
    if task == "question-answering":
        return _question_answering(pipe)
    if task in ("text-classification", "sentiment-analysis"):
        return lambda texts, **options: pipe(list(texts), **options)
    return lambda texts, **options: [pipe(text, **options) for text in texts]


def add_run_arguments(parser):
    group = parser.add_argument_group("task options")
    group.add_argument("--top-k", type=int, default=None, help="fill-mask / text-classification / QA answers")
    group.add_argument("--question", default=None, help="question-answering: the question for every context")
    group.add_argument("--max-answer-len", type=int, default=None)
    group.add_argument("--candidate-labels", default=None, help="zero-shot-classification: comma-separated")
    group.add_argument("--multi-label", action="store_true", help="zero-shot-classification")
    group.add_argument("--aggregation-strategy", choices=("none", "simple", "first", "average", "max"),
                       default=None, help="token-classification (default none)")
    group.add_argument("--no-truncation", dest="truncation", action="store_false",
                       help="refuse a text longer than the model takes (an error record) instead of "
                            "truncating it; question-answering always splits long contexts into windows")


def call_options(args):
    options = {}
    task = args.task
    if args.top_k is not None:
        options["top_k"] = args.top_k
    if task == "question-answering":
        options["question"] = args.question
        if args.max_answer_len is not None:
            options["max_answer_len"] = args.max_answer_len
    if task == "zero-shot-classification":
        options["candidate_labels"] = args.candidate_labels
        options["multi_label"] = args.multi_label
    if task in ("token-classification", "ner") and args.aggregation_strategy:
        options["aggregation_strategy"] = args.aggregation_strategy
    if task != "question-answering":
        options["truncation"] = args.truncation
    return options


FAMILY = CliFamily(
    prog="keras_deberta",
    description="DeBERTa (v1, v2/v3) in Keras 3: pipelines, .keras conversion and SavedModel export.",
    tasks=TASKS,
    make_pipeline=make_pipeline,
    load_model=load_model,
    add_run_arguments=add_run_arguments,
    call_options=call_options,
    load_tokenizer=load_in_graph_tokenizer,
    save_tokenizer=save_tokenizer,
    # e.g. `export --with-tokenizer` with a tokenizer option the in-graph tokenizer lacks
    user_errors=(NotImplementedError,),
)


def main(argv=None, stdin=None, stdout=None):
    """Runs the command line on `argv` (default sys.argv[1:]) and returns the exit status."""
    return cli_main(FAMILY, argv, stdin=stdin, stdout=stdout)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m keras_deepseek`: run text generation, convert or export DeepSeek-V2 checkpoints.

    python -m keras_deepseek run --task text-generation --model DIR_OR_HUB_ID --max-new-tokens 20 "Hello"
    cat prompts.txt | python -m keras_deepseek run --task text-generation --model DIR   # a prompt a line, a JSON line out
    python -m keras_deepseek convert --model DIR --output model.keras
    python -m keras_deepseek export --model DIR --output saved_model_dir

The generic parts (commands, stdin, JSON lines, progress, errors) are presets/cli.py; this file
says which tasks, model classes and generation options DeepSeek-V2 has.
"""

import sys

from presets.cli import CliFamily, main as cli_main

TASKS = ("text-generation",)


def _model_class(task):
    from keras_deepseek.modeling_deepseek_v2 import TFDeepseekV2ForCausalLM

    return {"text-generation": TFDeepseekV2ForCausalLM}[task]


def load_model(task, name_or_path, **options):
    return _model_class(task).from_pretrained(name_or_path, **options)


def make_pipeline(task, model, tokenizer=None):
    from keras_deepseek.pipelines import pipeline

    return pipeline(task, model=model, tokenizer=tokenizer)


def add_run_arguments(parser):
    group = parser.add_argument_group("text-generation")
    group.add_argument("--max-new-tokens", type=int, default=None, help="tokens to add at most (default 256, "
                       "or the checkpoint's generation_config.json)")
    sampling = group.add_mutually_exclusive_group()
    sampling.add_argument("--do-sample", dest="do_sample", action="store_true", default=None, help="sample")
    sampling.add_argument("--greedy", dest="do_sample", action="store_false", help="greedy decoding")
    group.add_argument("--temperature", type=float, default=None)
    group.add_argument("--top-k", type=int, default=None)
    group.add_argument("--top-p", type=float, default=None)
    group.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible on every backend)")
    group.add_argument("--new-text-only", action="store_true", help="print only the generated text, not the prompt")
    group.add_argument("--no-truncation", dest="truncation", action="store_false",
                       help="refuse a prompt longer than max_position_embeddings - max_new_tokens (an error "
                            "record) instead of keeping its last tokens")


def call_options(args):
    options = {name: getattr(args, name) for name in ("max_new_tokens", "do_sample", "temperature", "top_k",
                                                        "top_p", "seed") if getattr(args, name) is not None}
    options["return_full_text"] = not args.new_text_only
    options["truncation"] = args.truncation
    return options


def save_tokenizer(name_or_path, directory):
    from keras_deepseek.tokenization_deepseek_v2 import DeepseekV2Tokenizer

    DeepseekV2Tokenizer.from_pretrained(name_or_path).save_pretrained(directory)


FAMILY = CliFamily(
    prog="keras_deepseek",
    description="DeepSeek-V2 in Keras 3: text generation, .keras conversion and SavedModel export.",
    tasks=TASKS,
    make_pipeline=make_pipeline,
    load_model=load_model,
    add_run_arguments=add_run_arguments,
    call_options=call_options,
    save_tokenizer=save_tokenizer,
)


def main(argv=None, stdin=None, stdout=None):
    """Runs the command line on `argv` (default sys.argv[1:]) and returns the exit status."""
    return cli_main(FAMILY, argv, stdin=stdin, stdout=stdout)


if __name__ == "__main__":
    sys.exit(main())

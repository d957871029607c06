"""Benchmark evaluation: pass@1 over K samples, maj@K, length and truncation on math and vision benchmarks.

``gpgrl eval`` (:mod:`gpgrl.eval.cli`) for the command line; :func:`evaluate` from Python (the trainer
calls it every N steps). See ``docs/eval.md``.
"""

from gpgrl.data.prompts import PRESETS, PromptPreset, resolve_prompt
from gpgrl.eval.benchmarks import (
    BENCHMARKS,
    PAPER_BENCHMARKS,
    VISION_BENCHMARKS,
    Benchmark,
    all_benchmark_names,
    get_benchmark,
    is_vision_benchmark,
    load_benchmark,
    load_benchmarks,
    load_vision_benchmark,
    parse_benchmarks,
    parse_sources,
)
from gpgrl.eval.evaluator import evaluate
from gpgrl.eval.metrics import (
    compute_metrics,
    extract_final_answer,
    grounding_ious,
    maj_at_k,
    majority_correct,
    pass_at_1,
    pass_at_k,
    summarize,
    vote_key,
)
from gpgrl.eval.problem import BenchmarkDownloadError, MissingImagesError, Problem, UnknownBenchmarkError
from gpgrl.eval.report import render_table, write_outputs
from gpgrl.eval.settings import EvalSettings, check_settings

__all__ = [
    "BENCHMARKS",
    "PAPER_BENCHMARKS",
    "PRESETS",
    "VISION_BENCHMARKS",
    "Benchmark",
    "BenchmarkDownloadError",
    "EvalSettings",
    "MissingImagesError",
    "Problem",
    "PromptPreset",
    "UnknownBenchmarkError",
    "all_benchmark_names",
    "check_settings",
    "compute_metrics",
    "evaluate",
    "extract_final_answer",
    "get_benchmark",
    "grounding_ious",
    "is_vision_benchmark",
    "load_benchmark",
    "load_benchmarks",
    "load_vision_benchmark",
    "maj_at_k",
    "majority_correct",
    "parse_benchmarks",
    "parse_sources",
    "pass_at_1",
    "pass_at_k",
    "render_table",
    "resolve_prompt",
    "summarize",
    "vote_key",
    "write_outputs",
]

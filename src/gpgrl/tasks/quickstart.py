"""``gpgrl quickstart``: watch GPG teach a tiny model 2-digit addition on a laptop CPU in about 2 minutes.

Usage::

    gpgrl quickstart                          # writes runs/quickstart/{summary.json,quickstart.png,...}
    gpgrl quickstart --output DIR --seed 1    # another seed
    gpgrl quickstart --steps 30 --quiet       # fewer RL steps, only the final line
    gpgrl quickstart --tools                  # a tiny model learns to call a calculator (runs/quickstart-tools)
    gpgrl quickstart --tools --no-tools-baseline   # ... then the same RL without tools, for comparison

What it does, with no download:

1. builds the character-level tokenizer and a tiny OLMo-2 style model (random weights);
2. supervised warm-start (:mod:`gpgrl.tasks.sft`) on reference solutions of the training questions,
   stopped as soon as greedy accuracy on 100 *validation* questions (training questions left out of
   the warm-start) reaches 30%: the model then writes ``<think>..</think><answer>..</answer>`` but is
   often wrong, which leaves room for RL; the warm-started model is saved to ``DIR/sft``;
3. measures held-out accuracy **before** RL: greedy decoding (temperature 0), pass@1 on the 200 test
   questions of the task (never used for training), graded by the ``accuracy`` reward;
4. runs GPG with the real :class:`~gpgrl.train.trainer.Trainer` (preset ``gpg``, reward ``accuracy``:
   1.0 when the ``<answer>`` block equals the sum), evaluating greedily on the first 100 test
   questions every few steps; checkpoints go to ``DIR/rl``;
5. measures held-out accuracy **after** RL the same way as before, prints both, and writes
   ``summary.json`` (accuracies, steps, seconds, seed, the RL config), ``metrics.jsonl`` (one line per
   RL step and per evaluation) and ``quickstart.png`` (training reward and held-out accuracy per step).

``--tools`` (:data:`TOOLS`): the same tiny text model on 4-digit products (``builtin:multiplication``), which it
cannot work out alone; a two-phase warm-start on calculator episodes then a mix with direct answers; held-out
accuracy and calculator calls per episode measured on greedy *episodes* (the calculator answers the model's
calls, :func:`heldout_episodes`); GPG over multi-turn episodes (``rollout.tools: [calculator]``,
``recipes/quickstart_tools_cpu.yaml``); with ``--no-tools-baseline``, the same warm-started model then gets
the same GPG steps and settings without tools, written under ``no_tools`` in ``summary.json``.

The RL stage is exactly ``gpgrl train --config recipes/quickstart_cpu.yaml`` (starting from the
warm-started model in ``runs/quickstart/sft``), apart from the logging section: the quickstart prints
its own short lines instead of a progress bar and writes its own ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# The task (data.dataset: builtin:arithmetic uses ArithmeticTask's defaults: 2 digits, 2000 train and
# 200 test questions, seed 1234).
NUM_VALIDATION = 100  # training questions held out of the SFT warm-start, used to decide when to stop it
MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}
SFT = {"max_steps": 400, "batch_size": 32, "lr": 3e-3, "target_accuracy": 0.3, "check_every": 10}
DEFAULT_STEPS = 150
DEFAULT_EVAL_EVERY = 10
EVAL_SIZE_DURING_RL = 100
MAX_NEW_TOKENS = 32  # the longest reference completion is 23 tokens (with EOS)


@dataclass(frozen=True)
class Setup:
    """What differs between the text quickstart (2-digit addition) and the vision one (shapes' colours)."""

    name: str
    title: str
    dataset: str  # the RL recipe's data.dataset
    images: bool  # questions come with an image (data.image_column: image)
    max_new_tokens: int
    sft: dict[str, Any]
    steps: int
    rl: dict[str, Any]  # sections of the RL recipe that differ from the text one
    chance: float | None = None  # held-out accuracy of guessing (printed beside the accuracies)

    def task(self) -> Any:
        from gpgrl.data.datasets import builtin_task

        return builtin_task(self.dataset.removeprefix("builtin:"), **self.rl.get("data", {}).get("dataset_kwargs", {}))

    def build(self, seed: int) -> tuple[torch.nn.Module, Any]:
        """A fresh random model and its tokenizer (the vision one: its processor)."""
        if self.images:
            from gpgrl.models.tiny import build_tiny_vlm, build_vlm_processor

            processor = build_vlm_processor()
            return build_tiny_vlm(processor, seed=seed), processor
        from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model

        tok = build_char_tokenizer()
        return build_tiny_model(tok, seed=seed, **MODEL), tok

    def solution(self, task: Any, record: dict[str, Any]) -> str:
        """The reference completion the warm-start imitates."""
        return task.solution(record) if self.images else task.solution(record["question"])


TEXT = Setup("text", "tiny model, 2-digit addition", "builtin:arithmetic", False, MAX_NEW_TOKENS, SFT,
             DEFAULT_STEPS, {})
# Vision: a tiny Qwen2-VL names the colour of a generated shape as a letter (A red, B green, C blue,
# D yellow; image-blind guessing gets 1/4). Choices, each measured (benchmarks/results/quickstart_vision_seeds.md):
# - a two-phase warm-start. Phase 1 (format_steps) imitates well-formed answers with *random* letters: the
#   model learns to write one <answer> block without learning the image. Phase 2 imitates the correct
#   answers, checked every 2 steps, and stops at 45% validation accuracy: the model has begun to read the
#   image (typically one pair of colours told apart). One phase stopped that early left answers so
#   ill-formed at T > 0 (3% well-formed samples) that RL collapsed on 2 of 3 seeds; one phase run longer
#   jumps to 95-100% (the model learns to read the image all at once) and leaves RL nothing to do.
# - GPG then tells the remaining colours apart from the reward alone, one pair at a time (held-out accuracy
#   steps 50% -> 72% -> 100%); the pair "jumps" come after 20-100 steps depending on the seed, so 150 steps
#   at lr 2e-3 and T 1.0 (at T 0.7 or lr 1e-3 the policy settles on one letter for two colours sooner).
# - one-letter answers (a tiny byte-level model misspells sampled colour names, which drowns the reward);
#   a format reward beside accuracy (without it the policy learns to repeat "<answer>B<answer>B...", whose
#   last block still grades); 16 answers per prompt; at most 4 rollout draws per step (once nearly every
#   group is all right, threshold resampling would spend its whole budget of 20 draws each step).
VISION = Setup(
    "vision", "tiny Qwen2-VL, colour of a generated shape", "builtin:shapes", True, 8,
    {**SFT, "max_steps": 300, "format_steps": 40, "check_every": 2, "target_accuracy": 0.45}, 150,
    {"data": {"dataset": "builtin:shapes", "dataset_kwargs": {"colours": 4, "answer": "letter"},
              "prompt_column": "question", "answer_column": "answer", "image_column": "image"},
     "rollout": {"group_size": 16, "max_completion_length": 8, "temperature": 1.0},
     "rewards": [{"name": "accuracy", "weight": 1.0}, {"name": "gpgrl.data.shapes:answer_only", "weight": 0.5}],
     "algorithm": {"preset": "gpg", "max_resample_draws": 4},
     "optim": {"lr": 2e-3, "lr_scheduler": "cosine", "warmup_steps": 5, "max_grad_norm": 1.0},
     "train": {"prompts_per_step": 16}},
    chance=0.25,
)


# Tools: the same tiny text model learns to call the calculator for 4-digit products (builtin:multiplication),
# which it cannot work out alone. Choices, each measured (benchmarks/results/tools_quickstart.md):
# - a two-phase warm-start of fixed length. Phase 1 (tool_steps) imitates calculator episodes only: the model
#   learns the call format and to copy the question into the call and the tool's result into <answer> (copying
#   over ~60 characters takes a tiny model several hundred steps to learn). Phase 2 (mix_steps) imitates a MIX:
#   a share TOOL_SHARE of calculator episodes, the others direct answers (the right product, which a tiny model
#   cannot compute: its unaided answers are almost never exact). The model then calls the tool only on some
#   questions and its greedy answers are mostly unaided and wrong: RL has room.
# - reward: accuracy on the last <answer> block with number: true (the answer must be a number written out:
#   restating the question "1234*5678" in the block, which the grader would count equal, scores 0). The tool's
#   result is in a <tool_response> block, never read as the answer: only what the policy copies counts.
# - 2 turns at most (one call, then the answer) and a 160-token episode budget (the call is 88 tokens, the
#   tool's message 41, the answer 10, with a 4-digit question; EOS included).
# - at most 2 rollout draws per step (threshold resampling): with tools, one draw almost always has signal; the
#   no-tools comparison, whose answers are all wrong, would otherwise spend 20 draws on every step.
TOOL_SHARE = 0.3
TOOLS_MAX_TURNS = 2
TOOLS_EVAL_EVERY = 2  # the tool choice flips within ~10 GPG steps: evaluate often enough to see it
TOOLS = Setup(
    "tools", "tiny model, 4-digit multiplication with a calculator", "builtin:multiplication", False, 160,
    {"max_steps": 700, "tool_steps": 600, "batch_size": 32, "lr": 3e-3, "tool_share": TOOL_SHARE}, 30,
    {"data": {"dataset": "builtin:multiplication", "prompt_column": "question", "answer_column": "answer"},
     "rollout": {"group_size": 8, "max_completion_length": 160, "temperature": 1.0, "tools": ["calculator"],
                 "max_turns": TOOLS_MAX_TURNS},
     "rewards": [{"name": "accuracy", "weight": 1.0, "params": {"number": True}}],
     "algorithm": {"preset": "gpg", "max_resample_draws": 2},
     "optim": {"lr": 5e-4, "lr_scheduler": "cosine", "warmup_steps": 5, "max_grad_norm": 1.0},
     "train": {"prompts_per_step": 16}},
)


def rl_config(output_dir: str | Path = "runs/quickstart", *, seed: int = 0, steps: int = DEFAULT_STEPS,
              setup: Setup = TEXT) -> dict[str, Any]:
    """The RL stage's recipe as a raw dict (``recipes/quickstart_cpu.yaml`` holds the default one).

    >>> from gpgrl.config import from_dict
    >>> cfg = from_dict(rl_config())
    >>> cfg.algorithm, cfg.rollout.group_size, cfg.train.prompts_per_step, cfg.model.name_or_path
    ({'preset': 'gpg'}, 8, 32, 'runs/quickstart/sft')
    """
    out = Path(output_dir)
    raw = {
        "model": {"name_or_path": str(out / "sft"), "dtype": "float32"},
        "data": {"dataset": "builtin:arithmetic", "prompt_column": "question", "answer_column": "answer"},
        "rollout": {"group_size": 8, "max_completion_length": MAX_NEW_TOKENS, "temperature": 0.7},
        "rewards": [{"name": "accuracy", "weight": 1.0}],
        "algorithm": {"preset": "gpg"},
        "optim": {"lr": 5e-4, "lr_scheduler": "cosine", "warmup_steps": 10, "max_grad_norm": 1.0},
        "train": {"steps": steps, "prompts_per_step": 32, "micro_batch_size": 128, "seed": seed,
                  "output_dir": str(out / "rl"), "mixed_precision": "no"},
        "log": {"report_to": ["jsonl", "tensorboard"], "sample_every": 20},
    }
    return _merge(raw, setup.rl)


def heldout_accuracy(model: torch.nn.Module, tokenizer: Any, records: list[dict[str, Any]], *,
                     images: bool = False, max_new_tokens: int = MAX_NEW_TOKENS) -> float:
    """Greedy pass@1: share of ``records`` whose greedy answer gets ``accuracy`` reward 1 (prompted as in
    the RL recipe, ``data.prompt: plain``; with ``images``, each record's ``image`` goes with its question,
    and the answer must also be exactly one ``<answer>`` block)."""
    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.rewards import get_reward
    from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams

    builder = PromptBuilder(tokenizer, "plain")
    prompts = [builder.build(r["question"], [r["image"]] if images else ())[0] for r in records]
    out = HFGenerateEngine(model, builder.tokenizer, batch_size=128).generate(
        prompts, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0), num_samples=1
    )
    scores = get_reward("accuracy")(out.texts, answer=[r["answer"] for r in records])
    if images:  # the vision quickstart's answers must also be exactly one <answer> block
        from gpgrl.data.shapes import answer_only

        scores = [(s or 0.0) * f for s, f in zip(scores, answer_only(out.texts))]
    return sum(s or 0.0 for s in scores) / len(records)


@contextlib.contextmanager
def quiet_libraries(quiet: bool) -> Iterator[None]:
    """With ``quiet``, hide transformers' progress bars and the libraries' info/warning lines while saving."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    accelerate_logger = logging.getLogger("accelerate")
    verbosity, bars, level = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(), accelerate_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    accelerate_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        accelerate_logger.setLevel(level)


def _merge(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ``overrides`` applied section by section (a non-dict value replaces the section)."""
    out = dict(raw)
    for key, value in overrides.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def plot_title(title: str, width: int = 80) -> str:
    """The plot's title, wrapped to lines that fit the 7-inch figure at font size 10 (about 80 characters).

    >>> print(plot_title("a tiny Qwen2-VL names the colour of a generated shape (A-D)"))
    gpgrl quickstart: a tiny Qwen2-VL names the colour of a generated shape (A-D),
    GPG after a short SFT warm-start
    """
    import textwrap

    return "\n".join(textwrap.wrap(f"gpgrl quickstart: {title}, GPG after a short SFT warm-start", width))


def _plot(path: Path, train_rows: list[dict[str, float]], evals: list[tuple[int, float]], before: float,
          after: float, temperature: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [int(r["train/step"]) for r in train_rows]
    ax.plot(steps, [r["reward/accuracy"] for r in train_rows], color="tab:blue", alpha=0.6,
            label=f"sampled answers right (training, T={temperature:g})")
    ax.plot([s for s, _ in evals], [a for _, a in evals], "o-", color="tab:orange",
            label=f"held-out greedy accuracy ({EVAL_SIZE_DURING_RL} questions)")
    last = steps[-1] if steps else 0
    ax.scatter([0, last], [before, after], marker="s", s=50, color="black", zorder=3,
               label=f"held-out greedy accuracy (all test questions): {before:.0%} -> {after:.0%}")
    ax.set_xlabel("GPG step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(plot_title(title), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: What a quickstart writes into its folder (``--overwrite`` deletes these and nothing else).
QUICKSTART_FILES = ("sft", "rl", "rl-no-tools", "metrics.jsonl", "summary.json", "quickstart.png", "config.yaml")


def _previous(out: Path) -> str:
    """The quickstart run in ``out``, in words: its seed and result when it finished (summary.json)."""
    try:
        summary = json.loads((out / "summary.json").read_text())
        before, after = summary["accuracy_before"], summary["accuracy_after"]
        return (f"a finished {summary.get('quickstart', 'text')} quickstart run (seed {summary['seed']}: "
                f"{before:.1%} -> {after:.1%} in {summary['steps']} GPG steps)")
    except (OSError, ValueError, KeyError, TypeError):
        return "an unfinished quickstart run (no summary.json)"


def _free_folder(out: Path) -> Path:
    """``out-2`` (or -3, ...): the first sibling of ``out`` that does not exist."""
    k = 2
    while out.with_name(f"{out.name}-{k}").exists():
        k += 1
    return out.with_name(f"{out.name}-{k}")


def check_output(out: Path, *, overwrite: bool, vision: bool = False, tools: bool = False) -> str | None:
    """Whether the quickstart may write into ``out``; reads only.

    Raises ValueError (one line, with the fix) when ``out`` is a file (or sits under one), holds files
    that no quickstart writes (never deleted), or holds an earlier quickstart run and ``overwrite`` is
    not set. Returns the line saying what ``overwrite`` deletes, or None when there is nothing to delete.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "summary.json").write_text('{"seed": 0, "accuracy_before": 0.31, "accuracy_after": 0.885, '
    ...                                               '"steps": 150, "quickstart": "text"}')
    ...     try:
    ...         check_output(Path(d), overwrite=False)
    ...     except ValueError as e:
    ...         print(str(e).replace(d, "DIR"))
    ...     print(check_output(Path(d), overwrite=True).replace(d, "DIR"))
    DIR already holds a finished text quickstart run (seed 0: 31.0% -> 88.5% in 150 GPG steps): `gpgrl quickstart --overwrite` replaces it, `gpgrl quickstart --output DIR-2` keeps it
    --overwrite: deleting the previous quickstart run in DIR, a finished text quickstart run (seed 0: 31.0% -> 88.5% in 150 GPG steps): summary.json; 97 B
    """
    from gpgrl.train.checkpoint import disk_size, folder_problem, human_size

    problem = folder_problem(out, "--output")
    if problem:
        raise ValueError(problem)
    if not out.is_dir():
        return None
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if not entries:
        return None
    command = "gpgrl quickstart" + (" --vision" if vision else "") + (" --tools" if tools else "")
    foreign = [name for name in entries if name not in QUICKSTART_FILES]
    if foreign:
        raise ValueError(f"{out} holds files that a quickstart does not write ({', '.join(foreign[:5])}"
                         f"{', ...' if len(foreign) > 5 else ''}), which it never deletes: choose a new folder, e.g. "
                         f"`{command} --output {_free_folder(out)}`")
    what = _previous(out)
    if not overwrite:
        raise ValueError(f"{out} already holds {what}: `{command} --overwrite` replaces it, "
                         f"`{command} --output {_free_folder(out)}` keeps it")
    size = sum(disk_size(out / name) for name in entries)
    shown = [f"{name}/" if (out / name).is_dir() else name for name in entries]
    return (f"--overwrite: deleting the previous quickstart run in {out}, {what}: {', '.join(shown)}; "
            f"{human_size(size)}")


def clear_output(out: Path) -> None:
    """Delete what a quickstart wrote into ``out`` (:data:`QUICKSTART_FILES`); anything else stays."""
    from gpgrl.train.checkpoint import delete_entries

    delete_entries(out, QUICKSTART_FILES)


def run(output: str | Path = "runs/quickstart", *, seed: int = 0, steps: int | None = None,
        sft_steps: int | None = None, eval_every: int | None = None, eval_size: int | None = None,
        quiet: bool = False, rl_overrides: dict[str, Any] | None = None, vision: bool = False,
        overwrite: bool = False, tools: bool = False, baseline: bool = False) -> dict[str, Any]:
    """The whole quickstart (``vision``: the tiny vision-language one; ``tools``: the calculator one, with
    ``baseline`` the same RL without tools after it); returns what it writes to ``summary.json``.

    ``eval_size`` keeps only the first N test questions; ``rl_overrides`` changes sections of the RL
    recipe (e.g. ``{"train": {"prompts_per_step": 4}}``, for fast tests). A folder that holds an earlier
    quickstart is refused (ValueError, :func:`check_output`) unless ``overwrite``, which deletes it first
    and prints what it deleted.
    """
    if vision and tools:
        raise ValueError("the quickstart is text, --vision or --tools, not both")
    if baseline and not tools:
        raise ValueError("--no-tools-baseline compares the --tools quickstart with RL without tools: add --tools")
    removes = check_output(Path(output), overwrite=overwrite, vision=vision, tools=tools)
    # A tiny model is fastest on one thread: more threads only add synchronisation (and on a busy
    # machine they fight other jobs for the cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with quiet_libraries(quiet):
            if tools:
                return _run_tools(Path(output), TOOLS, seed=seed, steps=steps or TOOLS.steps,
                                  sft_steps=sft_steps or TOOLS.sft["max_steps"],
                                  eval_every=eval_every or TOOLS_EVAL_EVERY,
                                  eval_size=eval_size, quiet=quiet, rl_overrides=rl_overrides or {}, removes=removes,
                                  baseline=baseline)
            setup = VISION if vision else TEXT
            return _run(Path(output), setup, seed=seed, steps=steps or setup.steps,
                        sft_steps=sft_steps or setup.sft["max_steps"], eval_every=eval_every or DEFAULT_EVAL_EVERY,
                        eval_size=eval_size,
                        quiet=quiet, rl_overrides=rl_overrides or {}, removes=removes)
    finally:
        torch.set_num_threads(threads)


def _begin(out: Path, removes: str | None, seed: int, quiet: bool) -> Callable[[str], None]:
    """A quickstart's start: the earlier run it replaces deleted (saying so), the folder made, the seed set;
    returns its ``say`` (a line unless ``quiet``)."""
    if removes:
        print(f"[quickstart] {removes}", flush=True)
        clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return say


def _run(out: Path, setup: Setup, *, seed: int, steps: int, sft_steps: int, eval_every: int, eval_size: int | None,
         quiet: bool, rl_overrides: dict[str, Any], removes: str | None) -> dict[str, Any]:
    from gpgrl.config import from_dict, save_config
    from gpgrl.tasks.sft import SFTConfig, supervised_warm_start
    from gpgrl.train.checkpoint import quiet_saving
    from gpgrl.train.trainer import Trainer

    t_start = time.perf_counter()
    say = _begin(out, removes, seed, quiet)
    task = setup.task()  # the same questions as the RL recipe's data.dataset
    train_records, test_records = task.records("train"), task.records("test")
    if eval_size is not None:
        test_records = test_records[:eval_size]
    sft_records, val_records = train_records[:-NUM_VALIDATION], train_records[-NUM_VALIDATION:]
    model, tok = setup.build(seed)  # tok: the tokenizer, or the vision model's processor
    sft = setup.sft

    def accuracy(policy: torch.nn.Module, records: list[dict[str, Any]]) -> float:
        return heldout_accuracy(policy, tok, records, images=setup.images, max_new_tokens=setup.max_new_tokens)

    # 1. supervised warm-start, stopped early ("partly right")
    say(f"[quickstart] {setup.title}: {sum(p.numel() for p in model.parameters()) / 1e3:.0f}k parameters; "
        f"SFT warm-start until {sft['target_accuracy']:.0%} validation accuracy (at most {sft_steps} steps)")
    sft_cfg = SFTConfig(steps=sft_steps, batch_size=sft["batch_size"], lr=sft["lr"], seed=seed,
                        check_every=sft["check_every"], target_accuracy=sft["target_accuracy"],
                        min_steps=sft.get("min_steps", 0))
    questions = [r["question"] for r in sft_records]
    images = [[r["image"]] for r in sft_records] if setup.images else None
    format_hist: list[dict[str, float]] = []
    if sft.get("format_steps"):  # phase 1: the answer format, with random answers (see VISION)
        format_steps = min(sft["format_steps"], sft_steps)
        say(f"[quickstart] warm-start phase 1: {format_steps} steps on well-formed answers with random letters")
        rng = random.Random(seed)
        format_hist = supervised_warm_start(
            model, tok, questions, [task.random_solution(rng) for _ in sft_records],
            dataclasses.replace(sft_cfg, steps=format_steps, target_accuracy=None), images=images)
        sft_cfg = dataclasses.replace(sft_cfg, seed=seed + 1)
    sft_hist = supervised_warm_start(
        model, tok, questions, [setup.solution(task, r) for r in sft_records],
        sft_cfg, check=lambda: accuracy(model, val_records), log=None if quiet else say, images=images,
    )
    with quiet_saving():
        model.save_pretrained(str(out / "sft"))
        tok.save_pretrained(str(out / "sft"))
    seconds_sft = time.perf_counter() - t_start

    # 2. held-out accuracy before RL
    before = accuracy(model, test_records)
    guessing = f" (guessing: {setup.chance:.0%})" if setup.chance else ""
    say(f"[quickstart] held-out accuracy BEFORE GPG (greedy, {len(test_records)} test questions): {before:.1%}"
        f"{guessing}")

    # 3. GPG with the real trainer, held-out evaluations interleaved
    raw = _merge(rl_config(out, seed=seed, steps=steps, setup=setup), rl_overrides)
    # The trainer closes its logger at the end of each train() call, and the quickstart calls it in
    # chunks: it keeps its own metrics.jsonl and progress lines instead of the trainer's sinks.
    raw["log"] = {"report_to": [], "sample_every": 0, "progress": False}
    cfg = from_dict(raw)
    t_rl = time.perf_counter()
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tok)
    eval_records = test_records[:EVAL_SIZE_DURING_RL]
    evals: list[tuple[int, float]] = [(0, accuracy(model, eval_records))]
    train_rows: list[dict[str, float]] = []
    with open(out / "metrics.jsonl", "w") as log:
        log.write(json.dumps({"step": 0, "eval/heldout_accuracy": evals[0][1]}) + "\n")
        while trainer.step < steps:
            rows = trainer.train(stop_at_step=min(trainer.step + eval_every, steps))
            train_rows += rows
            policy = trainer.acc.unwrap_model(trainer.model)
            evals.append((trainer.step, accuracy(policy, eval_records)))
            for r in rows:
                log.write(json.dumps({"step": int(r["train/step"]), **_finite(r)}) + "\n")
            log.write(json.dumps({"step": trainer.step, "eval/heldout_accuracy": evals[-1][1]}) + "\n")
            last = rows[-1]
            say(step_line(trainer.step, steps, last, evals[-1][1], len(eval_records), time.perf_counter() - t_start,
                          raw["rewards"]))
    seconds_rl = time.perf_counter() - t_rl

    # 4. held-out accuracy after RL, measured exactly as before
    after = accuracy(trainer.acc.unwrap_model(trainer.model), test_records)
    seconds = time.perf_counter() - t_start
    summary = {
        "accuracy_before": before,
        "accuracy_after": after,
        "accuracy_delta": after - before,
        "accuracy_metric": f"greedy pass@1 on {len(test_records)} held-out test questions (accuracy reward)",
        "steps": trainer.step,
        "seconds": seconds,
        "seconds_sft": seconds_sft,
        "seconds_rl": seconds_rl,
        "sft_steps": len(format_hist) + len(sft_hist),
        "sft_phases": {"format": len(format_hist), "answers": len(sft_hist)},
        "seed": seed,
        "quickstart": setup.name,
        "model": dict(MODEL) if not setup.images else {"kind": "qwen2_vl", **{k: getattr(model.config.text_config, k)
                                                                            for k in ("hidden_size", "num_hidden_layers")}},
        "sft": {**sft, "max_steps": sft_steps},
        "evals": [{"step": s, "heldout_accuracy": a} for s, a in evals],
        "config": cfg.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    save_config(cfg, out / "config.yaml")
    _plot(out / "quickstart.png", train_rows, evals, before, after, cfg.rollout.temperature, setup.title)
    points = f"{(after - before) * 100:+.1f} points" + (f"; guessing: {setup.chance:.0%}" if setup.chance else "")
    print(f"[quickstart] held-out accuracy (greedy, {len(test_records)} test questions): before GPG {before:.1%} "
          f"-> after GPG {after:.1%} ({points}) in {trainer.step} steps, {seconds:.0f}s", flush=True)
    print(f"[quickstart] plot: {out / 'quickstart.png'}  summary: {out / 'summary.json'}  "
          f"RL metrics: {out / 'metrics.jsonl'}", flush=True)
    return summary


def heldout_episodes(model: torch.nn.Module, tokenizer: Any, records: list[dict[str, Any]], *, tools: Sequence[str],
                     max_new_tokens: int, max_turns: int = TOOLS_MAX_TURNS,
                     rewards: Sequence[dict[str, Any]] = TOOLS.rl["rewards"]) -> tuple[float, float]:
    """Greedy pass@1 of episodes and tool calls per episode on ``records``: each question's episode is run with
    the hf engine at temperature 0 exactly as in RL (:func:`~gpgrl.rollout.episodes.run_episodes`, the prompt
    listing ``tools``; with no tools, one answer), and graded by the RL recipe's ``accuracy`` reward on its
    last ``<answer>`` block."""
    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.rewards import get_reward
    from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams
    from gpgrl.rollout.episodes import episode_setup, run_episodes

    setup = episode_setup(tools=list(tools), max_turns=max_turns)
    try:
        builder = PromptBuilder(tokenizer, "plain", tools=setup.tools if setup else (),
                                tool_instructions=setup.tool_instructions if setup else None)  # as the trainer's
        prompts = [builder.build(r["question"])[0] for r in records]
        engine = HFGenerateEngine(model, builder.tokenizer, batch_size=256)
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        if setup is None:
            out = engine.generate(prompts, params, num_samples=1)
            calls = 0.0
        else:
            out = run_episodes(engine, prompts, records, params, 1, setup.make_env, tokenizer=tokenizer,
                               max_turns=setup.max_turns, pad_id=builder.tokenizer.pad_token_id)
            calls = sum(e.tool_calls for e in out.episodes) / len(records)
    finally:
        if setup is not None:
            setup.close()
    spec = dict(rewards[0])
    scores = get_reward(spec["name"], **spec.get("params", {}))(out.texts, answer=[r["answer"] for r in records])
    return sum(s or 0.0 for s in scores) / len(records), calls


def tool_sft_examples(task: Any, records: list[dict[str, Any]], share: float,
                      rng: random.Random) -> list[str | list[Any]]:
    """The warm-start's reference episodes: for a share ``share`` of the questions (drawn with ``rng``) the
    calculator episode (:meth:`~gpgrl.data.multiplication.MultiplicationTask.tool_episode`), for the others the
    direct answer.

    >>> from gpgrl.data.multiplication import MultiplicationTask
    >>> ex = tool_sft_examples(MultiplicationTask, [{"question": "12*34"}, {"question": "56*78"}], 0.5,
    ...                        random.Random(1))
    >>> print(ex[0][0]); ex[0][1:], ex[1]
    <tool_call>{"name": "calculator", "arguments": {"expression": "12*34"}}</tool_call>
    ([[{'role': 'tool', 'name': 'calculator', 'content': '408'}], '<answer>408</answer>'], '<answer>4368</answer>')
    """
    return [task.tool_episode(r["question"]) if rng.random() < share else task.solution(r["question"])
            for r in records]


def _rl_in_chunks(trainer: Any, steps: int, eval_every: int, evaluate: Any, log: Any, label: str, say: Any,
                  t_start: float, num_eval: int) -> tuple[list[dict[str, float]], list[tuple[int, float, float]]]:
    """Train to ``steps`` in chunks of ``eval_every``, evaluating after each; rows and evals (step, acc, calls)."""
    rows_all: list[dict[str, float]] = []
    evals = [(0, *evaluate(trainer.acc.unwrap_model(trainer.model)))]
    log.write(json.dumps({"run": label, "step": 0, "eval/heldout_accuracy": evals[0][1],
                          "eval/tool_calls": evals[0][2]}) + "\n")
    while trainer.step < steps:
        rows = trainer.train(stop_at_step=min(trainer.step + eval_every, steps))
        rows_all += rows
        evals.append((trainer.step, *evaluate(trainer.acc.unwrap_model(trainer.model))))
        for r in rows:
            log.write(json.dumps({"run": label, "step": int(r["train/step"]), **_finite(r)}) + "\n")
        log.write(json.dumps({"run": label, "step": trainer.step, "eval/heldout_accuracy": evals[-1][1],
                              "eval/tool_calls": evals[-1][2]}) + "\n")
        last = rows[-1]
        say(f"[quickstart] {label}: GPG step {trainer.step:3d}/{steps}  sampled answers "
            f"{last['reward/accuracy']:.0%} right  tool calls {last.get('episode/tool_calls', 0.0):.2f}/episode  "
            f"held-out accuracy ({num_eval} questions) {evals[-1][1]:.0%} with {evals[-1][2]:.2f} calls/episode  "
            f"[{time.perf_counter() - t_start:.0f}s]")
    return rows_all, evals


def _run_tools(out: Path, setup: Setup, *, seed: int, steps: int, sft_steps: int, eval_every: int,
               eval_size: int | None, quiet: bool, rl_overrides: dict[str, Any], removes: str | None,
               baseline: bool) -> dict[str, Any]:
    """``gpgrl quickstart --tools`` (see :func:`run`)."""
    import copy

    from gpgrl.config import from_dict, save_config
    from gpgrl.tasks.sft import SFTConfig, supervised_warm_start
    from gpgrl.tools import Toolbox
    from gpgrl.train.checkpoint import quiet_saving
    from gpgrl.train.trainer import Trainer

    t_start = time.perf_counter()
    say = _begin(out, removes, seed, quiet)
    raw = _merge(rl_config(out, seed=seed, steps=steps, setup=setup), rl_overrides)
    tools = list(raw["rollout"]["tools"])
    task = setup.task()
    train_records, test_records = task.records("train"), task.records("test")
    if eval_size is not None:
        test_records = test_records[:eval_size]
    eval_records = test_records[:EVAL_SIZE_DURING_RL]
    model, tok = setup.build(seed)
    sft = setup.sft

    def evaluate(policy: torch.nn.Module, records: list[dict[str, Any]], with_tools: bool = True) -> tuple[float, float]:
        return heldout_episodes(policy, tok, records, tools=tools if with_tools else (),
                                max_new_tokens=raw["rollout"]["max_completion_length"],
                                max_turns=raw["rollout"]["max_turns"], rewards=raw["rewards"])

    # 1. supervised warm-start: calculator episodes, then a mix of them and direct answers (fixed length)
    tool_steps = round(sft_steps * sft["tool_steps"] / sft["max_steps"])
    mix_steps = sft_steps - tool_steps
    say(f"[quickstart] {setup.title}: {sum(p.numel() for p in model.parameters()) / 1e3:.0f}k parameters; "
        f"SFT warm-start: {tool_steps} steps on calculator episodes, then {mix_steps} steps on a mix "
        f"({sft['tool_share']:.0%} calculator episodes, the others direct answers)")
    with Toolbox(tools) as box:
        functions = list(box.functions)
    questions = [r["question"] for r in train_records]
    sft_cfg = SFTConfig(steps=tool_steps, batch_size=sft["batch_size"], lr=sft["lr"], seed=seed)
    only_tools = tool_sft_examples(task, train_records, 1.0, random.Random(seed))
    tool_hist = supervised_warm_start(model, tok, questions, only_tools, sft_cfg, tools=functions) if tool_steps else []
    mix_hist = supervised_warm_start(
        model, tok, questions, tool_sft_examples(task, train_records, sft["tool_share"], random.Random(seed + 1)),
        dataclasses.replace(sft_cfg, steps=mix_steps, seed=seed + 1), tools=functions) if mix_steps else []
    sft_hist = tool_hist + mix_hist
    say(f"[quickstart] warm-start done in {time.perf_counter() - t_start:.0f}s: training loss "
        f"{sft_hist[-1]['sft/loss']:.3f}")
    with quiet_saving():
        model.save_pretrained(str(out / "sft"))
        tok.save_pretrained(str(out / "sft"))
    seconds_sft = time.perf_counter() - t_start
    warm = copy.deepcopy(model) if baseline else None

    # 2. held-out accuracy before RL: greedy episodes with the calculator
    before, calls_before = evaluate(model, test_records)
    say(f"[quickstart] held-out accuracy BEFORE GPG (greedy episodes with the calculator, {len(test_records)} test "
        f"questions): {before:.1%}, {calls_before:.2f} tool calls per episode")

    # 3. GPG with the real trainer and the calculator, held-out evaluations interleaved
    raw["log"] = {"report_to": [], "sample_every": 0, "progress": False, "save_rollouts": False}
    cfg = from_dict(raw)
    t_rl = time.perf_counter()
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tok)
    with open(out / "metrics.jsonl", "w") as log:
        train_rows, evals = _rl_in_chunks(trainer, steps, eval_every, lambda m: evaluate(m, eval_records), log,
                                          "tools", say, t_start, len(eval_records))
        seconds_rl = time.perf_counter() - t_rl
        after, calls_after = evaluate(trainer.acc.unwrap_model(trainer.model), test_records)
        seconds = time.perf_counter() - t_start
        say(f"[quickstart] held-out accuracy AFTER GPG: {after:.1%}, {calls_after:.2f} tool calls per episode")

        # 4. the comparison: the same warm-started model, the same RL settings and budget, no tools
        base = None
        if baseline:
            def evaluate_plain(policy: torch.nn.Module, records: list[dict[str, Any]]) -> tuple[float, float]:
                return evaluate(policy, records, with_tools=False)

            base = _no_tools_run(raw, out, warm, tok, steps=steps, eval_every=eval_every, evaluate=evaluate_plain,
                                 records=(test_records, eval_records), log=log, say=say, t_start=t_start)

    summary = {
        "accuracy_before": before,
        "accuracy_after": after,
        "accuracy_delta": after - before,
        "tool_calls_before": calls_before,
        "tool_calls_after": calls_after,
        "accuracy_metric": f"greedy pass@1 of episodes with the calculator on {len(test_records)} held-out test "
                           "questions (accuracy reward, number: true)",
        "steps": trainer.step,
        "seconds": seconds,
        "seconds_sft": seconds_sft,
        "seconds_rl": seconds_rl,
        "sft_steps": len(sft_hist),
        "sft_phases": {"tools": len(tool_hist), "mix": len(mix_hist)},
        "seed": seed,
        "quickstart": setup.name,
        "model": dict(MODEL),
        "sft": {**sft, "max_steps": sft_steps},
        "evals": [{"step": s, "heldout_accuracy": a, "tool_calls": c} for s, a, c in evals],
        "train": [{"step": int(r["train/step"]), "sampled_accuracy": r["reward/accuracy"],
                   "tool_calls": r.get("episode/tool_calls")} for r in train_rows],
        "config": cfg.to_dict(),
    }
    if base is not None:
        summary["no_tools"] = base
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    save_config(cfg, out / "config.yaml")
    _plot_tools(out / "quickstart.png", summary, cfg.rollout.temperature, setup.title)
    line = f"before GPG {before:.1%} -> after GPG {after:.1%} ({(after - before) * 100:+.1f} points)"
    if base is not None:
        line += f"; without tools {base['accuracy_before']:.1%} -> {base['accuracy_after']:.1%}"
    print(f"[quickstart] held-out accuracy (greedy, {len(test_records)} test questions): {line}; tool calls per "
          f"episode {calls_before:.2f} -> {calls_after:.2f}; {trainer.step} steps, {seconds:.0f}s", flush=True)
    print(f"[quickstart] plot: {out / 'quickstart.png'}  summary: {out / 'summary.json'}  "
          f"RL metrics: {out / 'metrics.jsonl'}", flush=True)
    return summary


def _no_tools_run(raw: dict[str, Any], out: Path, model: torch.nn.Module, tok: Any, *, steps: int, eval_every: int,
                  evaluate: Any, records: tuple[list[dict[str, Any]], list[dict[str, Any]]], log: Any, say: Any,
                  t_start: float) -> dict[str, Any]:
    """The ``--no-tools-baseline`` run: ``raw`` without tools (single answers), from the warm-started ``model``;
    ``evaluate(policy, records)`` measures it without tools; ``records`` are the test and the during-RL ones."""
    import copy

    from gpgrl.config import from_dict
    from gpgrl.train.trainer import Trainer

    test_records, eval_records = records
    t_base = time.perf_counter()
    raw_base = copy.deepcopy(raw)
    raw_base["rollout"] = {k: v for k, v in raw_base["rollout"].items() if k not in ("tools", "max_turns")}
    raw_base["train"]["output_dir"] = str(out / "rl-no-tools")
    before = evaluate(model, test_records)[0]
    trainer = Trainer.from_config(from_dict(raw_base), model=model, tokenizer=tok)
    rows, evals = _rl_in_chunks(trainer, steps, eval_every, lambda m: evaluate(m, eval_records), log, "no tools",
                                say, t_start, len(eval_records))
    after = evaluate(trainer.acc.unwrap_model(trainer.model), test_records)[0]
    say(f"[quickstart] no tools, same warm-start and RL budget: held-out accuracy {before:.1%} -> {after:.1%}")
    return {"accuracy_before": before, "accuracy_after": after, "seconds_rl": time.perf_counter() - t_base,
            "evals": [{"step": s, "heldout_accuracy": a} for s, a, _ in evals],
            "train": [{"step": int(r["train/step"]), "sampled_accuracy": r["reward/accuracy"]} for r in rows],
            "config": trainer.cfg.to_dict()}


def _plot_tools(path: Path, summary: dict[str, Any], temperature: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    train, evals = summary["train"], summary["evals"]
    ax.plot([r["step"] for r in train], [r["sampled_accuracy"] for r in train], color="tab:blue", alpha=0.5,
            label=f"sampled episodes right (training, T={temperature:g})")
    ax.plot([e["step"] for e in evals], [e["heldout_accuracy"] for e in evals], "o-", color="tab:orange",
            label="held-out greedy accuracy, with the calculator")
    base = summary.get("no_tools")
    if base:
        ax.plot([e["step"] for e in base["evals"]], [e["heldout_accuracy"] for e in base["evals"]], "s--",
                color="tab:gray", label="held-out greedy accuracy, RL without tools")
    ax.set_xlabel("GPG step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    bx.plot([r["step"] for r in train], [r["tool_calls"] for r in train], color="tab:blue", alpha=0.5,
            label="sampled episodes (training)")
    bx.plot([e["step"] for e in evals], [e["tool_calls"] for e in evals], "o-", color="tab:orange",
            label="held-out greedy episodes")
    bx.set_xlabel("GPG step")
    bx.set_ylabel("calculator calls per episode")
    bx.set_ylim(0, 1.05)
    bx.grid(alpha=0.3)
    bx.legend(loc="lower right", fontsize=8)
    fig.suptitle(plot_title(title, width=120), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def step_line(step: int, steps: int, row: dict[str, float], heldout: float, num_heldout: int, seconds: float,
              rewards: list[dict[str, Any]]) -> str:
    """One progress line of the RL stage, in the plot's terms: the accuracy of the sampled answers (the
    plot's blue line) and the held-out greedy accuracy (its orange line) first; then, where the training
    reward is more than the accuracy (the vision quickstart adds a format reward), that total with its terms.

    >>> row = {"reward/accuracy": 0.62, "reward/mean": 0.93, "adv/alpha": 1.33, "rollout/completion_length": 6.0}
    >>> print(step_line(20, 150, row, 0.71, 100, 95.4, [{"name": "accuracy", "weight": 1.0},
    ...                                                 {"name": "gpgrl.data.shapes:answer_only", "weight": 0.5}]))
    [quickstart] GPG step  20/150  sampled answers 62% right  held-out accuracy (100 questions) 71%  reward 0.93 (accuracy + 0.5 x answer_only)  alpha 1.33  length 6.0  [95s]
    >>> print(step_line(20, 150, row, 0.71, 100, 95.4, [{"name": "accuracy", "weight": 1.0}]))
    [quickstart] GPG step  20/150  sampled answers 62% right  held-out accuracy (100 questions) 71%  alpha 1.33  length 6.0  [95s]
    """
    terms = [(float(r.get("weight", 1.0)), str(r["name"]).rpartition(":")[2]) for r in rewards]
    total = ""
    if terms != [(1.0, "accuracy")]:
        total = "  reward {:.2f} ({})".format(row["reward/mean"], " + ".join(
            name if weight == 1 else f"{weight:g} x {name}" for weight, name in terms))
    return (f"[quickstart] GPG step {step:3d}/{steps}  sampled answers {row['reward/accuracy']:.0%} right  "
            f"held-out accuracy ({num_heldout} questions) {heldout:.0%}{total}  alpha {row['adv/alpha']:.2f}  "
            f"length {row['rollout/completion_length']:.1f}  [{seconds:.0f}s]")


def _finite(row: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: write None instead."""
    return {k: (v if v == v and abs(v) != float("inf") else None) for k, v in row.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpgrl quickstart",
        description="CPU demo, a few minutes, no download: a tiny model gets a short supervised warm-start on "
                    "2-digit addition (--vision: a tiny Qwen2-VL on naming the colour of a generated shape), then "
                    "GPG raises its held-out accuracy. Prints accuracy before and after and writes summary.json, "
                    "metrics.jsonl and quickstart.png.",
    )
    parser.add_argument("--vision", action="store_true",
                        help="the vision-language quickstart (needs the vision extra: pip install 'gpgrl[vision]')")
    parser.add_argument("--tools", action="store_true",
                        help="the tool-use quickstart: the tiny model learns to call a calculator for 4-digit "
                             "products it cannot work out alone (RL over multi-turn episodes, rollout.tools)")
    parser.add_argument("--no-tools-baseline", action="store_true",
                        help="with --tools: then run the same RL (same warm-started model, steps and settings) "
                             "without tools, and report both")
    parser.add_argument("--output", default=None,
                        help="output folder (default: runs/quickstart, runs/quickstart-vision with --vision, "
                             "runs/quickstart-tools with --tools)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, the warm-start and RL (default: 0)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"GPG steps (default: {TEXT.steps}; with --vision {VISION.steps}; with --tools "
                             f"{TOOLS.steps})")
    parser.add_argument("--sft-steps", type=int, default=None,
                        help=f"most warm-start steps (default: {SFT['max_steps']}, with --vision "
                             f"{VISION.sft['max_steps']}; it usually stops earlier; with --tools exactly "
                             f"{TOOLS.sft['max_steps']})")
    parser.add_argument("--eval-every", type=int, default=None,
                        help=f"GPG steps between held-out evaluations (default: {DEFAULT_EVAL_EVERY}; with --tools "
                             f"{TOOLS_EVAL_EVERY})")
    parser.add_argument("--eval-size", type=int, default=None,
                        help="use only the first N test questions (default: all 200)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the final result line (and what --overwrite deletes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier quickstart run in the output folder (without it, such a folder is "
                             "refused: a finished run is never deleted without asking)")
    args = parser.parse_args(argv)
    for name in ("steps", "sft_steps", "eval_every", "eval_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.vision and args.tools:
        parser.error("choose one of --vision and --tools")
    if args.no_tools_baseline and not args.tools:
        parser.error("--no-tools-baseline goes with --tools")
    if args.vision:
        from gpgrl.models.vision import require_vision

        try:
            require_vision()
        except ImportError as e:
            parser.error(str(e))
    output = args.output or ("runs/quickstart-vision" if args.vision else "runs/quickstart-tools" if args.tools
                             else "runs/quickstart")
    try:
        check_output(Path(output), overwrite=args.overwrite, vision=args.vision, tools=args.tools)  # before anything is built
    except ValueError as e:
        from gpgrl.runtime import error

        error("quickstart", str(e))
        return 2
    run(output, seed=args.seed, steps=args.steps, sft_steps=args.sft_steps, eval_every=args.eval_every,
        eval_size=args.eval_size, quiet=args.quiet, vision=args.vision, overwrite=args.overwrite, tools=args.tools,
        baseline=args.no_tools_baseline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Seconds and memory per training step: gpgrl GPG and GRPO against TRL's GRPOTrainer, on the same tiny Qwen2.

    python benchmarks/step_speed.py --trl-python /tmp/venv-trl/bin/python     # the comparison (~30 min)
    python benchmarks/step_speed.py --scaling                                 # gpgrl only: G and length sweeps
    python benchmarks/step_speed.py --memory-pass --models b --trl-python ... # peak memory, RSS = live memory
    python benchmarks/step_speed.py --quick --trl-python ...                  # a check that everything runs

TRL is a benchmark-only extra, never a dependency of gpgrl: install it in a separate virtual environment on
the same torch and transformers versions as gpgrl's (pin the versions ``pip freeze`` shows there)::

    python3 -m venv /tmp/venv-trl
    /tmp/venv-trl/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==5.24.0 accelerate==1.15.0 \\
        tokenizers==0.23.3 safetensors==0.8.0 datasets==5.2.0 trl==1.16.0

Without ``--trl-python`` only the two gpgrl configurations run.

What runs. Two models are built from configs with a fixed seed and saved once to ``--workdir``; every
configuration loads the same files: (a) a Qwen2 (hidden 128, 2 layers, 4 heads, 2 KV heads, MLP 512, tied
head) on a character-level tokenizer (108 ids), (b) the same on a 151,936-id vocabulary (Qwen2.5's size):
the character tokenizer plus filler words ``w<i>``, so every id decodes to text. Configurations, each in a
fresh process (``--worker``), in alternating order (the order is reversed on every other repetition):

1. ``gpgrl_gpg``: gpgrl's GPG preset (no reference model, no ratio, no KL);
2. ``gpgrl_grpo``: gpgrl's GRPO preset (beta 0.04 with a frozen reference model, ratio and clipping);
3. ``trl_gpg``: TRL ``GRPOTrainer`` as close to GPG as it goes: beta 0, ``scale_rewards="none"``,
   ``loss_type="dapo"`` (token mean over the batch), one iteration;
4. ``trl_beta``: the same with beta 0.04 (TRL builds its reference model from the same folder).

Shared: P prompts x G answers per step in one micro-batch (one forward-backward per step on both sides),
``max_completion_length`` new tokens at temperature 1, plain ``torch.optim.AdamW`` (lr 1e-6, no weight
decay, constant schedule), gradient clipping at 1.0, float32, no gradient checkpointing, seed 0, one torch
thread, the chat template of the tokenizer, a continuous reward that differs within every group (the
mean of ``ord(c) % 13 / 12`` over the answer's characters, plus 0.001 per character).

Measured per step (after ``--warmup`` steps that are not counted): wall and CPU time of the whole step and
of generation. Generation is timed by wrapping the call that samples the answers: gpgrl's
``trainer.engine.generate``, TRL's ``GRPOTrainer._generate_single_turn`` (both: ``model.generate`` on the
padded batch, plus cutting at EOS). The step is timed around ``Trainer.train(stop_at_step=k+1)`` (gpgrl)
and between TRL's ``on_step_begin``/``on_step_end`` callbacks. "Update" is step minus generation: reward
scoring, the reference model's forward, the policy's forward-backward and the optimizer step. Tokens/s:
completion tokens of the step (up to and including EOS) over the step's wall time. Memory: the peak
resident set of the whole process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), and the resident set
just before the first step (model, optimizer and libraries loaded).

Results: ``benchmarks/results/step_speed.{md,json}``; ``--scaling`` writes ``step_speed_scaling.{json,png}``
and a section of the md. ``--report`` re-renders the md from the json files (and pastes in the hand-written
``results/step_speed_notes.md``: what favours either side).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CONFIGS = ["gpgrl_gpg", "gpgrl_grpo", "trl_gpg", "trl_beta"]
LABELS = {
    "gpgrl_gpg": "gpgrl GPG (no ref.)",
    "gpgrl_grpo": "gpgrl GRPO (beta 0.04, ref.)",
    "trl_gpg": "TRL GRPOTrainer, GPG-like (beta 0)",
    "trl_beta": "TRL GRPOTrainer, beta 0.04",
}
MODELS = {"a": {"vocab": None}, "b": {"vocab": 151936}}  # None: the character tokenizer's own size
MODEL_SHAPE = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 512}
QUESTIONS = [f"What is {a}+{b}? Think, then answer." for a, b in
             [(12, 7), (3, 45), (28, 16), (9, 9), (51, 30), (6, 77), (40, 2), (13, 13),
              (64, 8), (5, 31), (22, 22), (70, 19), (8, 56), (33, 4), (17, 60), (1, 99)]]
LR = 1e-6


# ---------------------------------------------------------------------------------------- pure helpers
def reward_value(text: str) -> float:
    """The benchmark's reward: continuous, and different for almost any two different answers.

    >>> reward_value("")
    0.0
    >>> round(reward_value("ab"), 4)    # ord('a') % 13 = 6, ord('b') % 13 = 7
    0.5437
    """
    if not text:
        return 0.0
    return sum(ord(c) % 13 for c in text) / (12 * len(text)) + 0.001 * len(text)


def median_spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and relative spread ((max - min) / median) of ``values`` (NaN-free).

    >>> median_spread([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'spread': 1.0, 'n': 3}
    """
    vals = [float(v) for v in values if v == v]
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "spread": float("nan"), "n": 0}
    med = statistics.median(vals)
    return {"median": med, "min": min(vals), "max": max(vals),
            "spread": (max(vals) - min(vals)) / med if med else float("nan"), "n": len(vals)}


def run_order(configs: list[str], repetitions: int) -> list[tuple[int, str]]:
    """(repetition, config) in alternating order: forward on even repetitions, reversed on odd ones.

    >>> run_order(["x", "y", "z"], 2)
    [(0, 'x'), (0, 'y'), (0, 'z'), (1, 'z'), (1, 'y'), (1, 'x')]
    """
    return [(r, c) for r in range(repetitions) for c in (configs if r % 2 == 0 else configs[::-1])]


def summarize_run(steps: list[dict[str, float]]) -> dict[str, float]:
    """Per-process medians over the measured steps of one run (one value per quantity)."""
    out: dict[str, float] = {}
    for key in ("wall", "cpu", "gen_wall", "gen_cpu", "tokens"):
        out[key] = statistics.median(s[key] for s in steps)
    out["update_wall"] = statistics.median(s["wall"] - s["gen_wall"] for s in steps)
    out["update_cpu"] = statistics.median(s["cpu"] - s["gen_cpu"] for s in steps)
    out["tokens_per_s"] = statistics.median(s["tokens"] / s["wall"] for s in steps)
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Group finished runs by (model, config) and take median/spread over repetitions of each quantity."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        if r.get("ok"):
            groups.setdefault((r["model"], r["config"]), []).append(r)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (model, config), rs in sorted(groups.items()):
        per = [summarize_run(r["steps"]) for r in rs]
        stats = {k: median_spread([p[k] for p in per]) for k in per[0]}
        stats["peak_rss_mb"] = median_spread([r["peak_rss_mb"] for r in rs])
        stats["ready_rss_mb"] = median_spread([r["ready_rss_mb"] for r in rs])
        stats["model_mb"] = median_spread([r.get("model_mb", float("nan")) for r in rs])
        out[f"{model}/{config}"] = stats
    return out


def ratio(agg: dict[str, Any], model: str, num: str, den: str, key: str) -> float:
    """median(num) / median(den) of quantity ``key`` on ``model`` (NaN when either is missing)."""
    try:
        return agg[f"{model}/{num}"][key]["median"] / agg[f"{model}/{den}"][key]["median"]
    except (KeyError, ZeroDivisionError):
        return float("nan")


def fmt(stat: dict[str, float], digits: int = 2) -> str:
    """``median (min-max)`` of a :func:`median_spread` result.

    >>> fmt({"median": 1.234, "min": 1.0, "max": 1.5, "spread": 0.4, "n": 3})
    '1.23 (1.00-1.50)'
    """
    if stat["n"] == 0:
        return "n/a"
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def render_table(agg: dict[str, Any], model: str) -> str:
    """The markdown table of one model's configurations."""
    rows = ["| configuration | step wall s | generation wall s | update wall s | step CPU s | generation CPU s "
            "| update CPU s | completion tokens | tokens/s | peak RSS MB | RSS before 1st step MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in CONFIGS:
        s = agg.get(f"{model}/{c}")
        if s is None:
            rows.append(f"| {LABELS[c]} | not run |" + " |" * 10)
            continue
        rows.append(f"| {LABELS[c]} | {fmt(s['wall'])} | {fmt(s['gen_wall'])} | {fmt(s['update_wall'])} "
                    f"| {fmt(s['cpu'])} | {fmt(s['gen_cpu'])} | {fmt(s['update_cpu'])} | {fmt(s['tokens'], 0)} "
                    f"| {fmt(s['tokens_per_s'], 0)} | {fmt(s['peak_rss_mb'], 0)} | {fmt(s['ready_rss_mb'], 0)} |")
    return "\n".join(rows)


def target_lines(agg: dict[str, Any], memory: dict[str, Any] | None = None) -> list[str]:
    """The issue's targets with the measured ratios (medians over repetitions): wall time decides, CPU time
    (less disturbed by other jobs on a shared machine) is shown next to it."""
    def met(value: float, limit: float) -> str:
        if value != value:
            return "not measured"
        return "met" if value <= limit else "NOT met"

    lines = []
    m = ratio(agg, "b", "gpgrl_gpg", "trl_gpg", "peak_rss_mb")
    lines.append(f"- Peak memory, GPG / TRL (beta 0), model b: **{m:.2f}x** (target <= 0.6x: {met(m, 0.6)})")
    try:
        gpg = agg["b/gpgrl_gpg"]["peak_rss_mb"]["median"]
        grpo = agg["b/gpgrl_grpo"]["peak_rss_mb"]["median"]
        ref = agg["b/gpgrl_grpo"]["model_mb"]["median"]
        line = (f"- Peak memory, gpgrl GRPO - GPG, model b: **{grpo - gpg:.0f} MB**; the reference model's "
                f"weights are {ref:.0f} MB (target: the difference >= the reference model: "
                f"{'met' if grpo - gpg >= ref else 'NOT met'})")
        peak = memory_peaks(memory)
        if ("b", "gpgrl_gpg") in peak and ("b", "gpgrl_grpo") in peak:
            diff = peak[("b", "gpgrl_grpo")] - peak[("b", "gpgrl_gpg")]
            line += (f"; with RSS following live memory (the memory pass below) **{diff:.1f} MB** vs {ref:.1f} MB: "
                     f"{'met' if diff >= ref else 'NOT met'}")
        lines.append(line)
    except KeyError:
        lines.append("- Peak memory, gpgrl GRPO - GPG: not measured")
    for model, limit in (("b", 0.6), ("a", 0.9)):
        t = ratio(agg, model, "gpgrl_gpg", "trl_gpg", "wall")
        c = ratio(agg, model, "gpgrl_gpg", "trl_gpg", "cpu")
        lines.append(f"- Step wall time, GPG / TRL (beta 0), model {model}: **{t:.2f}x** (target <= {limit}x: "
                     f"{met(t, limit)}); CPU time {c:.2f}x")
    u = ratio(agg, "b", "gpgrl_gpg", "gpgrl_grpo", "update_wall")
    uc = ratio(agg, "b", "gpgrl_gpg", "gpgrl_grpo", "update_cpu")
    lines.append(f"- Update phase wall time, GPG / gpgrl GRPO with reference, model b: **{u:.2f}x** "
                 f"(target <= 0.8x: {met(u, 0.8)}); CPU time {uc:.2f}x")
    for model in ("a", "b"):
        t = ratio(agg, model, "gpgrl_grpo", "trl_beta", "wall")
        c = ratio(agg, model, "gpgrl_grpo", "trl_beta", "cpu")
        p = ratio(agg, model, "gpgrl_grpo", "trl_beta", "peak_rss_mb")
        lines.append(f"- (no target) gpgrl GRPO / TRL beta 0.04, model {model}: step wall {t:.2f}x, CPU {c:.2f}x, "
                     f"peak memory {p:.2f}x")
    return lines


# ---------------------------------------------------------------------------------------- the models
def build_tokenizer(vocab: int | None, save_dir: Path):
    """The character tokenizer (gpgrl.models.tiny), or the same padded with filler words to ``vocab`` ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from gpgrl.models.tiny import CHARS, CHAT_TEMPLATE, SPECIAL_TOKENS, TAG_TOKENS

    table: dict[str, int] = {}
    for tok in SPECIAL_TOKENS + TAG_TOKENS + list(CHARS) + ["<unk>"]:
        table.setdefault(tok, len(table))
    i = 0
    while vocab is not None and len(table) < vocab:  # filler words: never produced by encoding, decode to text
        table.setdefault(f"w{i} ", len(table))
        i += 1
    core = Tokenizer(models.WordLevel(vocab=table, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL_TOKENS)
    core.add_tokens(TAG_TOKENS)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                  additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
                                  padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(save_dir))
    return tok


def build_models(workdir: Path) -> dict[str, str]:
    """Build and save models a and b (seed 0) under ``workdir``; returns their folders."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    folders = {}
    for name, spec in MODELS.items():
        folder = workdir / f"model_{name}"
        folders[name] = str(folder)
        if (folder / "model.safetensors").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        tok = build_tokenizer(spec["vocab"], folder)
        s = MODEL_SHAPE
        config = Qwen2Config(vocab_size=len(tok), hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
                             num_hidden_layers=s["num_layers"], num_attention_heads=s["num_heads"],
                             num_key_value_heads=s["num_kv_heads"], max_position_embeddings=1024,
                             tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             bos_token_id=None, attention_dropout=0.0)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.bos_token_id = None
        model.save_pretrained(str(folder))
    return folders


def load(folder: str):
    """Tokenizer (always the fast class that was saved: AutoTokenizer would pick Qwen2's) and float32 model."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return tok, model


# ---------------------------------------------------------------------------------------- worker side
def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """Peak resident memory of this process: ``ru_maxrss``. On Linux it carries over the parent's mark through
    fork and exec, so the driver keeps itself small (the models are built in a child process) and the
    kernel's per-address-space mark (VmHWM) is recorded next to it as a check."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hwm_mb() -> float:
    return _status_mb("VmHWM")


class Clock:
    """Accumulates wall and CPU seconds of the calls it wraps."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - w
                self.cpu += time.process_time() - c
        return timed


def worker_gpgrl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from gpgrl.config import from_dict
    from gpgrl.train.trainer import Trainer

    torch.set_num_threads(1)
    tok, model = load(spec["folder"])
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    preset = {"gpgrl_gpg": "gpg", "gpgrl_grpo": "grpo"}[spec["config"]]
    P, G = spec["prompts"], spec["G"]
    cfg = from_dict({
        "model": {"name_or_path": spec["folder"], "dtype": "float32"},
        "data": {"dataset": "in-memory", "prompt_column": "question", "answer_column": "answer", "prompt": "plain"},
        "rollout": {"group_size": G, "max_completion_length": spec["length"], "temperature": 1.0},
        "algorithm": {"preset": preset},
        "optim": {"lr": LR, "lr_scheduler": "constant", "max_grad_norm": 1.0, "weight_decay": 0.0},
        "train": {"steps": 10_000, "prompts_per_step": P, "micro_batch_size": P * G, "seed": 0,
                  "output_dir": spec["output_dir"], "overwrite": True, "mixed_precision": "no", "num_threads": 1},
        "log": {"report_to": [], "sample_every": 0, "progress": False},
    })
    records = [{"question": q, "answer": ""} for q in QUESTIONS]

    def reward(completions, **_):
        return [reward_value(c) for c in completions]

    import copy

    ref = copy.deepcopy(model).eval() if preset == "grpo" else None
    trainer = Trainer(cfg, model=model, tokenizer=tok, dataset=records, rewards=[reward], ref_model=ref)
    gen = Clock()
    trainer.engine.generate = gen.wrap(trainer.engine.generate)
    ready = _rss_mb()
    steps = []
    for k in range(spec["warmup"] + spec["steps"]):
        gen.wall = gen.cpu = 0.0
        w, c = time.perf_counter(), time.process_time()
        metrics = trainer.train(stop_at_step=trainer.step + 1)[-1]
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        if k >= spec["warmup"]:
            steps.append({"wall": wall, "cpu": cpu, "gen_wall": gen.wall, "gen_cpu": gen.cpu,
                          "tokens": metrics["rollout/num_tokens"], "reward": metrics.get("reward/mean", float("nan")),
                          "own_step_seconds": metrics["perf/step_seconds"],
                          "own_generation_seconds": metrics["perf/generation_seconds"],
                          "skipped": metrics.get("optim/skipped", 0.0), "draws": metrics["rollout/draws"]})
    trainer.close()
    import transformers

    import gpgrl

    return {"steps": steps, "ready_rss_mb": ready, "model_mb": model_mb, "peak_rss_mb": _peak_mb(), "vm_hwm_mb": _hwm_mb(),
            "versions": {"gpgrl": gpgrl.__version__, "torch": torch.__version__, "transformers": transformers.__version__}}


def worker_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    tok, model = load(spec["folder"])
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    P, G = spec["prompts"], spec["G"]
    total = spec["warmup"] + spec["steps"]
    beta = {"trl_gpg": 0.0, "trl_beta": 0.04}[spec["config"]]
    args = GRPOConfig(
        output_dir=spec["output_dir"], per_device_train_batch_size=P * G, gradient_accumulation_steps=1,
        num_generations=G, max_completion_length=spec["length"], temperature=1.0, top_p=1.0, top_k=0,
        beta=beta, scale_rewards="none", loss_type="dapo", num_iterations=1,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0,
        max_steps=total, seed=0, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        log_completions=False,
    )
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS] * 4)

    def reward(completions, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [reward_value(t) for t in texts]

    gen = Clock()
    steps: list[dict[str, float]] = []
    state: dict[str, float] = {}
    tokens = {"n": 0}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):
            gen.wall = gen.cpu = 0.0
            tokens["n"] = 0
            state["w"], state["c"] = time.perf_counter(), time.process_time()

        def on_step_end(self, args, st, control, **kw):
            wall, cpu = time.perf_counter() - state["w"], time.process_time() - state["c"]
            steps.append({"wall": wall, "cpu": cpu, "gen_wall": gen.wall, "gen_cpu": gen.cpu, "tokens": tokens["n"]})

    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=data, processing_class=tok,
                          callbacks=[Timer()])
    inner = gen.wrap(trainer._generate_single_turn)

    def generate(*a, **kw):
        completion_ids, logprobs = inner(*a, **kw)
        tokens["n"] += sum(len(c) for c in completion_ids)
        return completion_ids, logprobs

    trainer._generate_single_turn = generate
    ready = _rss_mb()
    trainer.train()
    return {"steps": steps[spec["warmup"]:], "ready_rss_mb": ready, "model_mb": model_mb, "peak_rss_mb": _peak_mb(), "vm_hwm_mb": _hwm_mb(),
            "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__}}


def worker(spec: dict[str, Any]) -> None:
    result = worker_trl(spec) if spec["config"].startswith("trl") else worker_gpgrl(spec)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------- driver side
def run_config(python: str, spec: dict[str, Any], log: Path, timeout: float,
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One configuration in a fresh process; its result dict, or ``ok: False`` with the error's tail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore", **(extra_env or {})}
    if not spec["config"].startswith("trl"):
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent / "src") + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    try:
        out = subprocess.run([python, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                             env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "ok": False, "error": f"timed out after {timeout:.0f}s"}
    with open(log, "a") as f:
        f.write(f"===== {spec['model']} {spec['config']} rep {spec.get('rep')} rc={out.returncode}\n{out.stderr[-4000:]}\n")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        return {**spec, "ok": False, "error": (out.stderr or out.stdout)[-1500:]}
    return {**spec, **json.loads(lines[-1][len("RESULT "):]), "ok": True, "process_seconds": time.perf_counter() - t}


def environment(trl_python: str | None) -> dict[str, Any]:
    env = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
           "torch_threads": 1}
    with contextlib.suppress(OSError, StopIteration):
        env["cpu_model"] = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                                if ln.startswith("model name"))
    if trl_python:
        out = subprocess.run([trl_python, "-c", "import trl, transformers, torch, accelerate; print(trl.__version__, "
                              "transformers.__version__, torch.__version__, accelerate.__version__)"],
                             capture_output=True, text=True)
        env["trl_env"] = out.stdout.strip()
    return env


def models_in_child(workdir: Path) -> dict[str, str]:
    """:func:`build_models` in a child process, so this driver's peak memory stays small (see ``_peak_mb``)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    out = subprocess.run([sys.executable, __file__, "--build", str(workdir)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def selected_configs(args: argparse.Namespace) -> list[str]:
    """CONFIGS, without TRL's when no ``--trl-python`` is given, restricted to ``--configs`` if given."""
    configs = [c for c in CONFIGS if args.trl_python or not c.startswith("trl")]
    return [c for c in configs if c in args.configs.split(",")] if args.configs else configs


def compare(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    folders = models_in_child(workdir)
    configs = selected_configs(args)
    runs: list[dict[str, Any]] = []
    loads: list[float] = [os.getloadavg()[0]]
    log = workdir / "step_speed.log"
    log.write_text("")
    t0 = time.perf_counter()
    for model in args.models.split(","):
        for rep, config in run_order(configs, args.repetitions):
            spec = {"model": model, "config": config, "rep": rep, "folder": folders[model], "G": args.G,
                    "prompts": args.prompts, "length": args.length, "warmup": args.warmup, "steps": args.steps,
                    "output_dir": str(workdir / "runs" / f"{model}-{config}")}
            python = args.trl_python if config.startswith("trl") else sys.executable
            r = run_config(python, spec, log, args.timeout)
            loads.append(os.getloadavg()[0])
            runs.append(r)
            if r["ok"]:
                s = summarize_run(r["steps"])
                print(f"[{time.perf_counter() - t0:6.0f}s] model {model} rep {rep} {config:11s} step {s['wall']:.2f}s "
                      f"(gen {s['gen_wall']:.2f}s) tokens {s['tokens']:.0f} peak {r['peak_rss_mb']:.0f} MB "
                      f"load {loads[-1]:.2f}", flush=True)
            else:
                print(f"[{time.perf_counter() - t0:6.0f}s] model {model} rep {rep} {config}: FAILED: "
                      f"{r['error'][-400:]}", flush=True)
    result = {"settings": {"G": args.G, "prompts": args.prompts, "length": args.length, "warmup": args.warmup,
                           "steps": args.steps, "repetitions": args.repetitions, "lr": LR, "model_shape": MODEL_SHAPE},
              "environment": environment(args.trl_python), "load_average_1min": loads,
              "minutes": (time.perf_counter() - t0) / 60, "runs": runs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_speed.json").write_text(json.dumps(result, indent=1))
    write_report(out)


MMAP_THRESHOLD = 65536  # bytes: glibc then maps every block this size or larger, and unmaps it when freed


def memory_pass(args: argparse.Namespace) -> None:
    """Peak memory with RSS following live memory: each configuration once, one measured step, with glibc's
    dynamic mmap threshold switched off (``MALLOC_MMAP_THRESHOLD_``), so freed large blocks go back to the
    OS instead of staying in the process as slack that later allocations reuse unseen. Slower (every large
    allocation faults its pages in again), hence a separate pass whose times are not reported."""
    workdir = Path(args.workdir)
    folders = models_in_child(workdir)
    configs = selected_configs(args)
    log = workdir / "step_speed_memory.log"
    log.write_text("")
    runs = []
    for model in args.models.split(","):
        for config in configs:
            spec = {"model": model, "config": config, "rep": 0, "folder": folders[model], "G": args.G,
                    "prompts": args.prompts, "length": args.length, "warmup": 1, "steps": 1,
                    "output_dir": str(workdir / "runs" / f"memory-{model}-{config}")}
            python = args.trl_python if config.startswith("trl") else sys.executable
            r = run_config(python, spec, log, args.timeout, {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)})
            runs.append(r)
            print(f"memory pass: model {model} {config}: "
                  + (f"peak {r['peak_rss_mb']:.0f} MB" if r["ok"] else "FAILED " + r["error"][-300:]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_speed_memory.json").write_text(json.dumps({"mmap_threshold": MMAP_THRESHOLD, "runs": runs}, indent=1))
    write_report(out)


def memory_peaks(data: dict[str, Any] | None) -> dict[tuple[str, str], float]:
    """``{(model, config): peak RSS MB}`` of the memory pass's finished runs (empty without a pass)."""
    return {(r["model"], r["config"]): r["peak_rss_mb"] for r in (data or {}).get("runs", []) if r.get("ok")}


def memory_lines(data: dict[str, Any]) -> list[str]:
    """The memory pass as a table and the GRPO - GPG check on it."""
    peak = memory_peaks(data)
    weights = {(r["model"], r["config"]): r["model_mb"] for r in data["runs"] if r.get("ok") and "model_mb" in r}
    lines = ["| model | " + " | ".join(LABELS[c] for c in CONFIGS) + " |", "|---" * (len(CONFIGS) + 1) + "|"]
    for model in sorted({m for m, _ in peak}):
        lines.append(f"| {model} | " + " | ".join(f"{peak[(model, c)]:.0f}" if (model, c) in peak else "-"
                                                  for c in CONFIGS) + " |")
    lines.append("")
    for model in sorted({m for m, _ in peak}):
        if (model, "gpgrl_gpg") in peak and (model, "gpgrl_grpo") in peak:
            diff, ref = peak[(model, "gpgrl_grpo")] - peak[(model, "gpgrl_gpg")], weights.get((model, "gpgrl_grpo"))
            ref_text = f"{ref:.1f} MB" if ref is not None else "?"
            lines.append(f"- model {model}: gpgrl GRPO - GPG = **{diff:.1f} MB**; the reference model's weights are "
                         f"{ref_text}" + (f" (target: the difference >= the reference model: "
                                          f"{'met' if diff >= ref else 'NOT met'})" if ref else ""))
        if (model, "gpgrl_gpg") in peak and (model, "trl_gpg") in peak:
            lines.append(f"- model {model}: peak memory GPG / TRL (beta 0) = "
                         f"{peak[(model, 'gpgrl_gpg')] / peak[(model, 'trl_gpg')]:.2f}x")
    return lines


def scaling(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    folders = models_in_child(workdir)
    points = [("G", g, args.scaling_length) for g in (4, 8, 16)] + [("length", L, args.G) for L in (64, 128, 256)]
    out = Path(args.out)
    previous = out / "step_speed_scaling.json"
    runs = json.loads(previous.read_text())["runs"] if previous.exists() and not args.fresh else []
    log = workdir / "step_speed_scaling.log"
    log.write_text("")
    for model in args.models.split(","):
        for config in (args.configs or "gpgrl_gpg,gpgrl_grpo").split(","):
            for axis, value, other in points:
                G, length = (value, other) if axis == "G" else (other, value)
                spec = {"model": model, "config": config, "rep": 0, "folder": folders[model], "G": G,
                        "prompts": args.prompts, "length": length, "warmup": 1, "steps": args.scaling_steps,
                        "output_dir": str(workdir / "runs" / f"scaling-{model}-{config}"), "axis": axis}
                r = run_config(sys.executable, spec, log, args.timeout)
                r["load"] = os.getloadavg()[0]
                runs = [x for x in runs if (x["model"], x["config"], x["G"], x["length"], x["axis"])
                        != (model, config, G, length, axis)] + [r]
                msg = (f"step {summarize_run(r['steps'])['wall']:.2f}s peak {r['peak_rss_mb']:.0f} MB" if r["ok"]
                       else "FAILED " + r["error"][-300:])
                print(f"model {model} {config} G={G} length={length}: {msg}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    loads = [r["load"] for r in runs if "load" in r]
    previous.write_text(json.dumps({"prompts": args.prompts, "runs": runs, "load_average_1min": loads}, indent=1))
    write_report(out)


def plot_scaling(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for col, axis in enumerate(("G", "length")):
        series: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
        for r in data["runs"]:
            if r.get("ok") and r["axis"] == axis:
                x = r["G"] if axis == "G" else r["length"]
                series.setdefault((r["model"], r["config"]), []).append(
                    (x, summarize_run(r["steps"])["wall"], r["peak_rss_mb"]))
        for (model, config), pts in sorted(series.items()):
            pts.sort()
            style = "-o" if config == "gpgrl_gpg" else "--s"
            label = f"model {model}, {LABELS[config]}"
            axes[0][col].plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
            axes[1][col].plot([p[0] for p in pts], [p[2] for p in pts], style, label=label)
        other = "completion length" if axis == "G" else "G"
        fixed = next((r["length"] if axis == "G" else r["G"] for r in data["runs"] if r.get("axis") == axis), "?")
        for row, ylabel in enumerate(("seconds per step", "peak RSS (MB)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            if row == 0:
                ax.set_yscale("log")  # model a's seconds are 1/20 of model b's
            ax.set_xlabel(f"G ({other} {fixed})" if axis == "G" else f"completion length ({other}={fixed})")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"gpgrl step time and memory vs G and completion length ({data['prompts']} prompts/step, 1 thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render_scaling(data: dict[str, Any]) -> str:
    rows = ["| model | configuration | G | completion length | step wall s | generation wall s | update wall s "
            "| tokens/s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        if not r.get("ok"):
            rows.append(f"| {r['model']} | {LABELS[r['config']]} | {r['G']} | {r['length']} | failed |||||")
            continue
        s = summarize_run(r["steps"])
        rows.append(f"| {r['model']} | {LABELS[r['config']]} | {r['G']} | {r['length']} | {s['wall']:.2f} "
                    f"| {s['gen_wall']:.2f} | {s['update_wall']:.2f} | {s['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(rows)


def write_report(out: Path) -> None:
    """Render ``step_speed.md`` from ``step_speed.json`` (and the scaling json/plot, when present)."""
    parts = ["# Step speed and memory: gpgrl vs TRL GRPOTrainer", "",
             "Written by `benchmarks/step_speed.py` (see its docstring for what is measured and how). "
             "Values are `median (min-max)` over repetitions, each repetition a fresh process whose own "
             "value is the median over its measured steps.", ""]
    main = out / "step_speed.json"
    if main.exists():
        data = json.loads(main.read_text())
        s, env = data["settings"], data["environment"]
        agg = aggregate(data["runs"])
        loads = data["load_average_1min"]
        parts += [f"Command: `nice -n 5 python benchmarks/step_speed.py --trl-python /tmp/venv-trl/bin/python` "
                  f"({data['minutes']:.0f} min).", "",
                  f"Settings: {s['prompts']} prompts x G={s['G']} = {s['prompts'] * s['G']} answers per step, "
                  f"up to {s['length']} new tokens, {s['warmup']} warm-up step(s) then {s['steps']} measured steps per "
                  f"process, {s['repetitions']} repetitions in alternating order, lr {s['lr']}, model shape "
                  f"{s['model_shape']}.", "",
                  f"Machine: {env.get('cpu_model', '?')}, {env['cpus']} cores, 1 torch thread; "
                  f"{env['platform']}, Python {env['python']}. TRL environment (trl, transformers, torch, accelerate): "
                  f"{env.get('trl_env', 'not used')}; gpgrl environment: "
                  f"{next((r['versions'] for r in data['runs'] if 'gpgrl' in r.get('versions', {})), '?')}. "
                  f"1-minute load average during the run: "
                  f"{min(loads):.2f}-{max(loads):.2f} (median {statistics.median(loads):.2f}).", ""]
        failed = [r for r in data["runs"] if not r.get("ok")]
        if failed:
            parts += [f"Failed runs: {len(failed)} (" + ", ".join(f"{r['model']}/{r['config']}" for r in failed) + ")", ""]
        memory = out / "step_speed_memory.json"
        mem = json.loads(memory.read_text()) if memory.exists() else None
        parts += ["## Targets (issue 11), medians of the same run", "", *target_lines(agg, mem), ""]
        for model, title in (("a", "Model a: Qwen2, 108-token vocabulary"),
                             ("b", "Model b: Qwen2, 151,936-token vocabulary")):
            parts += [f"## {title}", "", render_table(agg, model), ""]
        if mem is not None:
            parts += ["## Peak memory with RSS following live memory", "",
                      "`nice -n 5 python benchmarks/step_speed.py --memory-pass --models b --trl-python "
                      "/tmp/venv-trl/bin/python`: each configuration once, one measured step, with "
                      f"`MALLOC_MMAP_THRESHOLD_={mem['mmap_threshold']}` (glibc returns every freed block of that "
                      "size or more to the OS, so a process's peak RSS is its peak of live memory plus small "
                      "change; with the default allocator, slack freed earlier is reused unseen). Peak RSS, MB:",
                      "", *memory_lines(mem), ""]
        notes = out / "step_speed_notes.md"
        if notes.exists():
            parts += [notes.read_text().strip(), ""]
    scal = out / "step_speed_scaling.json"
    if scal.exists():
        data = json.loads(scal.read_text())
        plot_scaling(data, out / "step_speed_scaling.png")
        parts += ["## gpgrl: growth with G and completion length", "",
                  "`nice -n 5 python benchmarks/step_speed.py --scaling --fresh` (both models, GPG and GRPO, "
                  f"{max(len(r['steps']) for r in data['runs'] if r.get('ok'))} measured steps per point). "
                  f"{data['prompts']} prompts per step, one process per point, 1 warm-up step, medians over the "
                  "measured steps; one repetition, so no spread: read the trend, not the third digit. The G sweep "
                  "runs at completion length 64, the length sweep at G=8 (the point G=8, length 64 is in both). "
                  "1-minute load average at the points: "
                  + (f"{min(data['load_average_1min']):.1f}-{max(data['load_average_1min']):.1f}."
                     if data.get("load_average_1min") else "not recorded."), "",
                  "![scaling](step_speed_scaling.png)", "", render_scaling(data), ""]
    (out / "step_speed.md").write_text("\n".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--trl-python", default=None, help="python of the separate TRL environment")
    parser.add_argument("--scaling", action="store_true", help="gpgrl only: step time and memory vs G and length")
    parser.add_argument("--report", action="store_true", help="re-render the md (and plot) from the json files")
    parser.add_argument("--memory-pass", action="store_true",
                        help="peak memory only, with RSS following live memory (MALLOC_MMAP_THRESHOLD_)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 1 measured step: a check, not a result")
    parser.add_argument("--models", default="a,b")
    parser.add_argument("--configs", default=None, help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--scaling-length", type=int, default=64, help="completion length of the G sweep")
    parser.add_argument("--scaling-steps", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="--scaling: drop the points measured before")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one process may take")
    parser.add_argument("--workdir", default="/tmp/gpgrl_step_speed")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
    elif args.build:
        print(json.dumps(build_models(Path(args.build))))
    elif args.report:
        write_report(Path(args.out))
    elif args.scaling:
        scaling(args)
    elif args.memory_pass:
        memory_pass(args)
    else:
        if args.quick:
            args.repetitions, args.steps, args.out = 1, 1, str(Path(args.workdir) / "quick")
        compare(args)


if __name__ == "__main__":
    main()

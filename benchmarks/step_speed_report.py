"""The report of ``step_speed.py``: its tables, targets, floor and plot, from the json files the harness
writes (``results/step_speed*.json`` -> ``step_speed.md``, ``step_speed_scaling.png``).

    python benchmarks/step_speed.py --report       # re-renders the md and plot, measuring nothing

Pure functions of the measured runs (no torch): the medians over repetitions, the ratios to TRL, the
floor (each step's multiply-adds at the measured matmul rate) and the markdown. The measuring side
(models, workers, the driver) is ``step_speed.py``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

CONFIGS = ["gpgrl_gpg", "gpgrl_grpo", "trl_gpg", "trl_beta"]
LABELS = {
    "gpgrl_gpg": "gpgrl GPG (no ref.)",
    "gpgrl_grpo": "gpgrl GRPO (beta 0.04, ref.)",
    "trl_gpg": "TRL GRPOTrainer, GPG-like (beta 0)",
    "trl_beta": "TRL GRPOTrainer, beta 0.04",
}
TITLES = {"a": "Model a: Qwen2, 108-token vocabulary", "b": "Model b: Qwen2, 151,936-token vocabulary",
          "r": "Model r: SmolLM2-135M-Instruct (real weights, 49,152-token vocabulary)"}



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
        stats["step_peak_mb"] = median_spread([r["peak_rss_mb"] - r["ready_rss_mb"] for r in rs])
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
            "| update CPU s | completion tokens | tokens/s | peak RSS MB | RSS before 1st step MB | step's own peak MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in CONFIGS:
        s = agg.get(f"{model}/{c}")
        if s is None:
            rows.append(f"| {LABELS[c]} | not run |" + " |" * 11)
            continue
        rows.append(f"| {LABELS[c]} | {fmt(s['wall'])} | {fmt(s['gen_wall'])} | {fmt(s['update_wall'])} "
                    f"| {fmt(s['cpu'])} | {fmt(s['gen_cpu'])} | {fmt(s['update_cpu'])} | {fmt(s['tokens'], 0)} "
                    f"| {fmt(s['tokens_per_s'], 0)} | {fmt(s['peak_rss_mb'], 0)} | {fmt(s['ready_rss_mb'], 0)} "
                    f"| {fmt(s['step_peak_mb'], 0)} |")
    return "\n".join(rows)



def config_floor(agg: dict[str, Any], floor: dict[str, Any] | None, model: str, config: str) -> dict[str, float] | None:
    """The floor of ``config`` on ``model``: its multiply-adds (:func:`step_macs`, with the side's own head
    positions and the measured completion length), the floor seconds, and the step's wall time over it."""
    f, s = (floor or {}).get(model), agg.get(f"{model}/{config}")
    if f is None or s is None:
        return None
    completion = s["tokens"]["median"] / f["rows"]
    macs = step_macs(f["shape"], f["rows"], f["prompt_tokens"], completion,
                     head_positions(config, f["prompt_tokens"], completion), reference=config.endswith(("grpo", "beta")),
                     prefill_rows=f.get("groups") if config.startswith("gpgrl") else None,
                     # runs made before each prompt ran once in the update recorded no "train_groups"
                     train_prompt_rows=f.get("train_groups") if config.startswith("gpgrl") else None)
    seconds = floor_seconds(macs, f["decode_gflops"], f["train_gflops"])
    return {**macs, "completion": completion, "seconds": seconds, "multiple": s["wall"]["median"] / seconds,
            "gen_multiple": s["gen_wall"]["median"] / (2 * macs["generation"] / (f["decode_gflops"] * 1e9))}



def render_floor(agg: dict[str, Any], floor: dict[str, Any], model: str) -> str:
    """The floor table of one model: multiply-adds per phase, floor seconds, the step as a multiple of it."""
    f = floor[model]
    ms = f["matmul_shapes"]
    rows = [f"Matmul throughput, 1 thread, float32 `torch.mm`, best of 15 windows of 0.1 s: decoding shape {ms['decode'][0]}x"
            f"{ms['decode'][1]} by {ms['decode'][1]}x{ms['decode'][2]}: **{f['decode_gflops']:.1f} GFLOP/s**; "
            f"training shape {ms['train'][0]}x{ms['train'][1]} by {ms['train'][1]}x{ms['train'][2]}: "
            f"**{f['train_gflops']:.1f} GFLOP/s**. Prompt {f['prompt_tokens']:.1f} tokens (mean), {f['rows']} rows. "
            "Floor = 2 x multiply-adds / throughput (`step_macs`: linear maps, attention over the cache, the LM "
            "head where the side applies it, gpgrl's prompt prefill once per group; backward = 2 x forward).", "",
            "| configuration | completion tokens/row | generation GMAC | forward GMAC | backward GMAC | reference GMAC "
            "| floor s | step wall s | step / floor | generation / its floor |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in CONFIGS:
        x = config_floor(agg, floor, model, c)
        if x is None:
            continue
        rows.append(f"| {LABELS[c]} | {x['completion']:.1f} | {x['generation'] / 1e9:.1f} | {x['forward'] / 1e9:.1f} "
                    f"| {x['backward'] / 1e9:.1f} | {x['reference'] / 1e9:.1f} | {x['seconds']:.2f} "
                    f"| {agg[f'{model}/{c}']['wall']['median']:.2f} | **{x['multiple']:.1f}x** | {x['gen_multiple']:.1f}x |")
    return "\n".join(rows)



def target_lines(agg: dict[str, Any], memory: dict[str, Any] | None = None,
                 floor: dict[str, Any] | None = None) -> list[str]:
    """Issue 22's targets with the measured ratios (medians over repetitions): wall time decides, CPU time
    (less disturbed by other jobs on a shared machine) is shown next to it."""
    def met(value: float, limit: float) -> str:
        if value != value:
            return "not measured"
        return "met" if value <= limit else "NOT met"

    lines = []
    t = ratio(agg, "r", "gpgrl_gpg", "trl_gpg", "wall")
    c = ratio(agg, "r", "gpgrl_gpg", "trl_gpg", "cpu")
    lines.append(f"- Step wall time, GPG / TRL (beta 0), model r (SmolLM2-135M): **{t:.2f}x** (target <= 0.5x: "
                 f"{met(t, 0.5)}); CPU time {c:.2f}x")
    for key, what in (("peak_rss_mb", "whole-process peak RSS"), ("step_peak_mb", "step's own peak (peak RSS - RSS "
                                                                                   "before the 1st step)")):
        m = ratio(agg, "r", "gpgrl_gpg", "trl_gpg", key)
        lines.append(f"- Memory, GPG / TRL (beta 0), model r, {what}: **{m:.2f}x** (target <= 0.5x: {met(m, 0.5)})")
    for model, limit in (("b", 0.3), ("a", 0.8)):
        t = ratio(agg, model, "gpgrl_gpg", "trl_gpg", "wall")
        c = ratio(agg, model, "gpgrl_gpg", "trl_gpg", "cpu")
        lines.append(f"- Step wall time, GPG / TRL (beta 0), model {model}: **{t:.2f}x** (target <= {limit}x: "
                     f"{met(t, limit)}); CPU time {c:.2f}x")
    u = ratio(agg, "b", "gpgrl_gpg", "gpgrl_grpo", "update_wall")
    uc = ratio(agg, "b", "gpgrl_gpg", "gpgrl_grpo", "update_cpu")
    lines.append(f"- Update phase wall time, GPG / gpgrl GRPO with reference, model b: **{u:.2f}x** "
                 f"(target <= 0.75x: {met(u, 0.75)}); CPU time {uc:.2f}x")
    x = config_floor(agg, floor, "r", "gpgrl_gpg")
    mult = x["multiple"] if x else float("nan")
    lines.append(f"- Stretch: gpgrl GPG step on model r as a multiple of its floor (its multiply-adds at this CPU's "
                 f"measured matmul rate): **{mult:.1f}x** (target <= 2x: {met(mult, 2.0)})")
    for model in ("a", "b", "r"):
        if f"{model}/gpgrl_gpg" not in agg:
            continue
        m = ratio(agg, model, "gpgrl_gpg", "trl_gpg", "peak_rss_mb")
        t = ratio(agg, model, "gpgrl_grpo", "trl_beta", "wall")
        c = ratio(agg, model, "gpgrl_grpo", "trl_beta", "cpu")
        p = ratio(agg, model, "gpgrl_grpo", "trl_beta", "peak_rss_mb")
        lines.append(f"- (no target) model {model}: GPG / TRL (beta 0) peak memory {m:.2f}x; gpgrl GRPO / TRL beta "
                     f"0.04: step wall {t:.2f}x, CPU {c:.2f}x, peak memory {p:.2f}x")
    peak = memory_peaks(memory)
    for model in sorted({m for m, _ in peak}):
        if (model, "gpgrl_gpg") in peak and (model, "gpgrl_grpo") in peak:
            lines.append(f"- (no target) memory pass, model {model}: gpgrl GRPO - GPG = "
                         f"{peak[(model, 'gpgrl_grpo')] - peak[(model, 'gpgrl_gpg')]:.1f} MB")
    return lines



def model_shape(config: dict[str, Any]) -> dict[str, int]:
    """The sizes :func:`step_macs` needs, from a transformers ``config.json`` (Qwen2 / Llama field names).

    >>> model_shape({"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    ...              "intermediate_size": 1536, "vocab_size": 49152})["head_dim"]
    64
    """
    heads = config["num_attention_heads"]
    return {"hidden": config["hidden_size"], "layers": config["num_hidden_layers"], "heads": heads,
            "kv_heads": config.get("num_key_value_heads") or heads,
            "head_dim": config.get("head_dim") or config["hidden_size"] // heads,
            "intermediate": config["intermediate_size"], "vocab": config["vocab_size"]}



def step_macs(shape: dict[str, int], rows: int, prompt: float, completion: float, head_positions: float,
              reference: bool = False, prefill_rows: int | None = None,
              train_prompt_rows: int | None = None) -> dict[str, float]:
    """Multiply-adds of one step's matrix products (the compute a step cannot avoid), by phase.

    Per layer and token, the linear maps: q and o (``heads * head_dim`` outputs/inputs each), k and v
    (``kv_heads * head_dim`` each), the gated MLP (gate, up, down: ``3 * hidden * intermediate``); per
    layer, a token at position p (0-based) attends to p + 1 keys: ``2 * heads * head_dim`` per key (QK^T
    and AV). The LM head is ``hidden * vocab`` per projected position. Norms, rotary, softmax and the
    embedding lookup are not counted.

    * ``generation``: ``rows`` sequences through ``generate``: positions 0 .. prompt + completion - 2 are fed
      (the prompt at once, then one token at a time into the KV cache), the head runs on ``completion``
      positions (the last prompt position, then each fed completion token: ``logits_to_keep=1``).
      ``prefill_rows``: rows that run the prompt's first ``prompt - 1`` positions (gpgrl: one per group,
      its cache repeated for the group's rows; default ``rows``, as TRL's ``generate``).
    * ``forward``: the training forward over all ``prompt + completion`` positions, the head on
      ``head_positions`` of them per row (gpgrl: the completion only; TRL on a CPU: every position);
      with ``train_prompt_rows``, that many rows run the prompt's positions (gpgrl since each prompt runs
      once in the update: one per group, its completions from the prompt's cache) and every row its
      completion's (default ``rows``).
    * ``backward``: twice the forward (the gradient of each product's input and of its weight).
    * ``reference``: one more forward (no backward) for a reference model (beta > 0), else 0.

    A hand check, one row, prompt 2, completion 1, a layer of 34 linear MACs per token (q, k, v, o:
    2 * 2 * (2 + 2) = 16; MLP: 3 * 2 * 3 = 18), vocab 5: generation feeds 2 positions (2 * 34 = 68, keys
    1 + 2 = 3: 2 * 1 * 2 * 3 = 12, head 1 * 2 * 5 = 10: 90); the forward 3 positions (102, keys 6: 24, head 10: 136):

    >>> tiny = {"hidden": 2, "layers": 1, "heads": 1, "kv_heads": 1, "head_dim": 2, "intermediate": 3, "vocab": 5}
    >>> step_macs(tiny, rows=1, prompt=2, completion=1, head_positions=1)
    {'generation': 90.0, 'forward': 136.0, 'backward': 272.0, 'reference': 0.0, 'total': 498.0}
    >>> step_macs(tiny, rows=2, prompt=2, completion=1, head_positions=3, reference=True)["reference"]  # head on 3
    312.0

    Two rows of one group, the prompt's first position run once (34 + 2 * 1 * 2 * 1 = 38), then each row
    the rest (90 - 38 = 52): 38 + 2 * 52 = 142 instead of 2 * 90 = 180:

    >>> step_macs(tiny, rows=2, prompt=2, completion=1, head_positions=1, prefill_rows=1)["generation"]
    142.0

    The training forward of those two rows: the prompt's 2 positions once (2 * 34 + 2 * 1 * 2 * (1 + 2) = 80),
    each row its completion (136 - 80 = 56): 80 + 2 * 56 = 192 instead of 2 * 136 = 272:

    >>> step_macs(tiny, rows=2, prompt=2, completion=1, head_positions=1, train_prompt_rows=1)["forward"]
    192.0
    """
    h, d, L = shape["hidden"], shape["head_dim"], shape["layers"]
    linear = h * d * (2 * shape["heads"] + 2 * shape["kv_heads"]) + 3 * h * shape["intermediate"]
    per_key = 2 * shape["heads"] * d

    def positions(n: float, head: float) -> float:  # positions 0 .. n-1, the head on ``head`` of them
        return L * (linear * n + per_key * n * (n + 1) / 2) + head * h * shape["vocab"]

    prefix = positions(prompt - 1, 0)
    generation = rows * (positions(prompt + completion - 1, completion) - prefix) + (prefill_rows or rows) * prefix
    prompt_part = positions(prompt, 0)
    forward = rows * (positions(prompt + completion, head_positions) - prompt_part) + (train_prompt_rows or rows) * prompt_part
    out = {"generation": generation, "forward": forward, "backward": 2 * forward,
           "reference": forward if reference else 0.0}
    out["total"] = sum(out.values())
    return out



def floor_seconds(macs: dict[str, float], decode_gflops: float, train_gflops: float) -> float:
    """Seconds the step's multiply-adds take at the measured matmul throughput (2 FLOPs per MAC): generation
    at the decoding shape's rate, forward, backward and reference at the training shape's.

    >>> floor_seconds({"generation": 1e9, "forward": 1e9, "backward": 2e9, "reference": 0.0}, 2.0, 8.0)  # 1 + 0.75
    1.75
    """
    return 2 * macs["generation"] / (decode_gflops * 1e9) + \
        2 * (macs["forward"] + macs["backward"] + macs["reference"]) / (train_gflops * 1e9)



def head_positions(config: str, prompt: float, completion: float) -> float:
    """Positions per row where the side's training forward applies the LM head: gpgrl the completion only,
    TRL 1.16 on a CPU every position of prompt and completion (its fused head's non-Triton fallback)."""
    return completion if config.startswith("gpgrl") else prompt + completion



def prompt_line(check: dict[str, Any]) -> str:
    """One line of :func:`prompt_check`'s verdict for a model."""
    verdict = ("every one equal to the ids of the chat template applied once" if not check["mismatched"]
               else "MISMATCH in " + ", ".join(check["mismatched"]))
    return f"{check['checked']} prompts checked in {', '.join(check['configs'])}: {verdict}"



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
                  f"process, {s['repetitions']} repetitions in alternating order"
                  + "".join(f" (model {m}: {v['steps']} steps, {v['repetitions']} repetitions)"
                            for m, v in s.get("per_model", {}).items()
                            if (v["steps"], v["repetitions"]) != (s["steps"], s["repetitions"]))
                  + f", lr {s['lr']}, shape of models a and b {s['model_shape']}.", "",
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
        parts += ["## Targets (issue 22), medians of the same run", "", *target_lines(agg, mem, data.get("floor")), ""]
        checks = data.get("prompt_check", {})
        if checks:
            parts += ["Prompt ids (recorded at each side's sampling call, compared with the tokenizer's ids of the "
                      "chat template applied once):", "", *(f"- model {m}: {prompt_line(c)}" for m, c in
                                                         sorted(checks.items())), ""]
        ran = {r["model"] for r in data["runs"]}
        for model, title in TITLES.items():
            if model not in ran:
                continue
            parts += [f"## {title}", "", render_table(agg, model), ""]
            if model in data.get("floor", {}):
                parts += [f"### The floor, model {model}", "", render_floor(agg, data["floor"], model), ""]
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

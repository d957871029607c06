"""Faults and bad input run as a user runs them (`gpgrl ...` in a subprocess): nothing of an earlier run is
lost, every error is one line with no traceback, and nothing waits silently."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpgrl.models.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def gpgrl(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``gpgrl ARGS`` the way a user does; ``helpers:...`` rewards import from tests/."""
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(TESTS)]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, env=full,
                          timeout=timeout, cwd=kw.pop("cwd", REPO), **kw)


PROGRESS_BAR = re.compile(r"^[^|]*\|[^|]*\| *\d+/\d+ \[")  # transformers' "Loading weights: 100%|███| 24/24 [..."
LOADING = re.compile(r"^gpgrl (train|eval): load(ing .* \.\.\.|ed .* in \d+\.\d s( \(.*\))?)$")  # progress, not errors


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single line a failed command printed on stderr (no traceback; loading progress aside)."""
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and not PROGRESS_BAR.match(line) and not LOADING.match(line)]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def snapshot(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    model = save_tiny_model(root / "model")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"{a}+{a}", "answer": str(2 * a)}) + "\n" for a in range(8)))
    return {"root": root, "model": model, "data": data}


def train_args(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(setup["model"]), "--dataset", str(setup["data"]), "--rewards",
            "helpers:count_sevens", "--train.steps", "1", "--train.prompts_per_step", "2", "--rollout.group_size", "2",
            "--rollout.max_completion_length", "4", "--output_dir", str(out), "--log.progress", "false",
            "--log.sample_every", "0", "--log.report_to", "jsonl", *extra]


@pytest.fixture(scope="module")
def finished_run(setup) -> Path:
    """A run folder holding a finished 1-step run (checkpoint, metrics, config)."""
    out = setup["root"] / "finished"
    proc = gpgrl(*train_args(setup, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoints" / "step-000001" / "model" / "config.json").is_file()
    return out


# --- data lost ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--optim.lr", "-0.001", "optim.lr must be >= 0, got -0.001"),
    ("--rollout.temperature", "-1", "rollout.temperature must be > 0 for training, got -1.0"),
    ("--rollout.temperature", "0", "rollout.temperature must be > 0 for training, got 0.0"),
    ("--rollout.top_p", "1.5", "rollout.top_p must be in (0, 1], got 1.5"),
    ("--optim.adam_beta2", "1.2", "optim.adam_beta2 must be in [0, 1), got 1.2"),
])
def test_a_bad_setting_never_deletes_the_previous_run(setup, finished_run, flag, value, message):
    before = snapshot(finished_run)
    proc = gpgrl(*train_args(setup, finished_run, "--train.overwrite", "true", flag, value))
    assert proc.returncode == 2
    assert one_line_error(proc).startswith(f"gpgrl train: error: {message}")
    assert snapshot(finished_run) == before


def test_an_engine_that_fails_to_start_never_deletes_the_previous_run(tmp_path, monkeypatch):
    """The output folder is touched only once every part is built: a rollout engine that cannot start
    (a dead vllm_server URL) stops an overwriting run before the old run is deleted."""
    import gpgrl.train.trainer as trainer_module
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    cfg = tiny_config(tmp_path, train={"steps": 1, "prompts_per_step": 4})
    tok = build_char_tokenizer()
    Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok).train()
    before = snapshot(tmp_path / "run")
    assert "checkpoints/step-000001/trainer_state.pt" in before

    def dead_engine(*_args, **_kw):
        raise RuntimeError("cannot reach the vllm server")

    monkeypatch.setattr(trainer_module, "make_engine", dead_engine)
    cfg.train.overwrite = True
    with pytest.raises(RuntimeError, match="cannot reach"):
        Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok)
    assert snapshot(tmp_path / "run") == before


def test_a_misnamed_eval_benchmark_fails_before_the_previous_run_is_deleted(tmp_path):
    from gpgrl.eval.benchmarks import UnknownBenchmarkError
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    tok = build_char_tokenizer()
    Trainer.from_config(tiny_config(tmp_path, train={"steps": 1, "prompts_per_step": 4}),
                        model=build_tiny_model(tok, seed=0), tokenizer=tok).train()
    before = snapshot(tmp_path / "run")
    cfg = tiny_config(tmp_path, train={"steps": 1, "prompts_per_step": 4, "overwrite": True, "eval_every": 1,
                                       "eval_benchmarks": ["math5000"]})
    with pytest.raises(UnknownBenchmarkError, match="math5000"):
        Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok)
    assert snapshot(tmp_path / "run") == before


def test_resume_without_a_complete_checkpoint_replays_from_step_0_without_duplicate_rows(tmp_path, capsys):
    """kill -9 during the first save leaves logged steps and a half-written .tmp-step folder: --resume starts
    at step 0 and metrics.jsonl reads 1, 2, 3 (not 1, 2, 1, 2, 3)."""
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train import checkpoint
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    tok = build_char_tokenizer()
    cfg = tiny_config(tmp_path, train={"steps": 3, "prompts_per_step": 4})
    first = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok)
    first.train(stop_at_step=2)
    first.close()
    partial = checkpoint.temp_dir(tmp_path / "run", 2)  # what a kill during the save leaves
    (partial / "model").mkdir(parents=True)
    (partial / "model" / "config.json").write_text("{")
    cfg.train.resume = True
    resumed = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok)
    assert resumed.step == 0
    assert "has no complete checkpoint; starting from step 0" in capsys.readouterr().out
    resumed.train()
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run")] == ["step-000003"]


def test_eval_output_under_a_file_fails_before_generating(setup, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me\n")
    proc = gpgrl("eval", "--model", str(setup["model"]), "--benchmarks", "arithmetic", "--limit", "2",
                 "--max-new-tokens", "4", "--quiet", "--output", str(a_file / "eval"))
    assert proc.returncode == 2
    assert one_line_error(proc) == (f"gpgrl eval: error: --output {str(a_file / 'eval')!r} cannot be a folder: "
                                    f"{str(a_file)!r} is a file, not a folder; choose another")
    assert a_file.read_text() == "keep me\n" and "pass@1" not in proc.stdout  # nothing generated


# --- tracebacks where a sentence belongs -------------------------------------------------------------------

def _start_training(setup: dict[str, Path], out: Path, **env: str) -> subprocess.Popen:
    args = train_args(setup, out, "--train.steps", "500", "--rewards", "helpers:slow_sevens",
                      "--algorithm.max_resample_draws", "1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(TESTS)]), **env}
    # Ctrl-C as from a terminal, even when pytest itself runs in the background (`cmd &` in a script starts
    # it with SIGINT ignored, which a child inherits; gpgrl then rightly leaves the signal alone)
    proc = subprocess.Popen([sys.executable, "-m", "gpgrl.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):  # training has started
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    return proc


def test_ctrl_c_finishes_the_step_saves_and_says_how_to_resume(setup, tmp_path):
    out = tmp_path / "run"
    proc = _start_training(setup, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    n = steps[-1]
    assert steps == list(range(1, n + 1))
    ckpt = out / "checkpoints" / f"step-{n:06d}"
    assert (ckpt / "model" / "config.json").is_file() and (ckpt / "trainer_state.pt").is_file()
    assert "[gpgrl] Ctrl-C: finishing the current step, saving a checkpoint and stopping" in " ".join(err.split())
    assert err.strip().splitlines()[-1] == (f"gpgrl train: stopped on Ctrl-C after step {n}; last checkpoint: step {n} "
                                            f"({ckpt}); `gpgrl train ... --resume` continues from it")
    again = gpgrl(*train_args(setup, out, "--resume", "--train.steps", str(n + 1), "--rewards", "helpers:slow_sevens",
                              "--algorithm.max_resample_draws", "1"))  # the settings the run was started with
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {ckpt} at step {n}" in again.stdout


def test_a_second_ctrl_c_stops_at_once_and_keeps_what_was_saved(setup, tmp_path):
    out = tmp_path / "run"
    proc = _start_training(setup, out, SLOW_REWARD_SECONDS="5")  # both signals land in step 2 (5 s long)
    time.sleep(0.5)  # past step 1's bookkeeping
    proc.send_signal(signal.SIGINT)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("gpgrl train: interrupted at step ") and last.endswith(
        "done); no checkpoint yet; `--resume` starts again from step 0"), last
    assert "[gpgrl] Ctrl-C: finishing the current step" in " ".join(err.split())
    assert not any((out / "checkpoints").glob("step-*"))


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(setup, finished_run, tmp_path):
    """RLIMIT_FSIZE makes every write past 200 kB fail (EFBIG), as a full disk fails the write in progress."""
    import resource
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = snapshot(out / "checkpoints" / "step-000001")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = gpgrl(*train_args(setup, out, "--resume", "--train.steps", "2"), preexec_fn=small_files)
    assert proc.returncode == 1
    line = one_line_error_after_progress(proc)
    assert line.startswith(f"gpgrl train: error: could not write the checkpoint of step 2 into {out / 'checkpoints'} "
                           "(I/O error: File too large (os error 27); ")
    assert line.endswith("GB free); the previous checkpoint step-000001 is kept. Free some space or lower "
                         "train.save_total_limit, then --resume (--debug shows the traceback)")
    assert snapshot(out / "checkpoints" / "step-000001") == before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001"]  # no half-written folder


def test_torchs_own_write_failure_is_named_plainly(tmp_path, monkeypatch):
    """torch.save on a full disk raises RuntimeError('[enforce fail at inline_container.cc:672] . unexpected
    pos 576 vs 534'): the message says what it means."""
    import torch

    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train import checkpoint
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    tok = build_char_tokenizer()
    trainer = Trainer.from_config(tiny_config(tmp_path, train={"steps": 1, "prompts_per_step": 4}),
                                  model=build_tiny_model(tok, seed=0), tokenizer=tok)

    def full_disk(*_args, **_kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointError, match=r"could not write the checkpoint of step 0 into .* \(torch "
                       r"could not write a file: the disk is full or a file-size limit was hit; [0-9.]+ GB free\); "
                       r"no earlier checkpoint exists"):
        trainer.save_checkpoint()
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []


def one_line_error_after_progress(proc: subprocess.CompletedProcess) -> str:
    """The error line of a run that failed after training started (progress lines come before it)."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gpgrl ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def test_a_dead_vllm_server_is_one_line_and_debug_shows_its_traceback(setup, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = train_args(setup, tmp_path / "run", "--rollout.engine", "vllm_server", "--rollout.vllm_server_url",
                      f"http://127.0.0.1:{port}", "--rollout.vllm_timeout", "5")
    proc = gpgrl(*args)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert line.startswith(f"gpgrl train: error: vllm_server http://127.0.0.1:{port} ")
    assert line.endswith("(--debug shows the traceback)")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    shown = gpgrl("--debug", *args)
    assert "Traceback" in shown.stderr and "EngineError" in shown.stderr


def test_debug_shows_the_traceback_of_an_error(tmp_path):
    args = ["train", "--model", "x", "--dataset", "builtin:arithmetic", "--train.stepz", "3"]
    plain = gpgrl(*args)
    assert plain.returncode == 2 and one_line_error(plain).startswith("gpgrl train: error: unknown config key")
    shown = gpgrl("--debug", *args)
    assert "Traceback" in shown.stderr and "ConfigError: unknown config key 'train.stepz'" in shown.stderr
    shown = gpgrl(*args, env={"GPGRL_DEBUG": "1"})
    assert "Traceback" in shown.stderr


def test_prompts_longer_than_the_context_train_by_default_and_an_impossible_limit_is_one_line(setup, tmp_path):
    """The default prompt budget is the model's context (512 here) minus the answer's, so a long prompt is cut
    to fit and trains; a limit that leaves no room for the answer is refused before anything is written."""
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"question": "1+" * 400 + "1", "answer": "401"}) + "\n" for _ in range(4)))
    out = tmp_path / "run"
    args = train_args(setup, out)
    args[args.index("--dataset") + 1] = str(data)
    proc = gpgrl(*args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "prompts longer than data.max_prompt_length=508 tokens lose their beginning" in " ".join(proc.stderr.split())
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["rollout/prompts_truncated"] == 2 * row["rollout/draws"]  # every prompt drawn, cut to 508 tokens

    refused = gpgrl(*args, "--data.max_prompt_length", "512", "--output_dir", str(tmp_path / "other"))
    assert refused.returncode == 2
    assert one_line_error(refused) == (
        "gpgrl train: error: data.max_prompt_length=512 leaves no room for an answer in the model's context of 512 "
        "tokens; lower it to at most 508 (the context minus rollout.max_completion_length), or leave it unset for "
        "that default")
    assert not (tmp_path / "other" / "metrics.jsonl").exists()


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_model_folder_with_no_model_says_so(setup, tmp_path, command):
    empty = tmp_path / "sft"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model\n")
    if command == "train":
        proc = gpgrl(*train_args(setup, tmp_path / "run", "--model", str(empty)))
    else:
        proc = gpgrl("eval", "--model", str(empty), "--benchmarks", "arithmetic", "--limit", "1", "--quiet")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line == (f"gpgrl {command}: error: the model folder {str(empty)!r} holds no model: a folder saved with "
                    "save_pretrained has config.json and the weights (model.safetensors or pytorch_model.bin), with "
                    "the tokenizer's files, e.g. OUTPUT/checkpoints/step-000100/model.")
    assert "sentencepiece" not in line


# --- silent waits ------------------------------------------------------------------------------------------

def _train_in_process(tmp_path, **sections):
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    tok = build_char_tokenizer()
    cfg = tiny_config(tmp_path, **sections)
    return Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok).train()


def test_a_reward_that_fails_for_every_answer_stops_resampling_at_once(tmp_path):
    history = _train_in_process(tmp_path, rewards=[{"name": "helpers:count_sevens"}, {"name": "helpers:raises"}],
                                train={"steps": 2, "prompts_per_step": 4})
    assert [m["rollout/draws"] for m in history] == [1.0, 1.0]  # not max_resample_draws (20) each
    assert [m["reward/failures"] for m in history] == [16.0, 16.0]  # every answer of the one draw
    assert [m["rollout/resample_budget_exhausted"] for m in history] == [0.0, 0.0]


def test_reward_time_is_logged_per_function_and_a_dominant_one_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLOW_REWARD_SECONDS", "3")  # most of the step even on a loaded machine
    history = _train_in_process(tmp_path, rewards=[{"name": "helpers:slow_sevens"}, {"name": "helpers:count_sevens"}],
                                algorithm={"preset": "gpg", "max_resample_draws": 1},
                                train={"steps": 1, "prompts_per_step": 4})
    m = history[0]
    assert m["perf/reward_seconds/slow_sevens"] >= 3
    assert m["perf/reward_seconds"] == pytest.approx(m["perf/reward_seconds/slow_sevens"]
                                                     + m["perf/reward_seconds/count_sevens"])
    assert m["perf/generation_seconds"] + m["perf/reward_seconds"] <= m["perf/step_seconds"]
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert row["perf/reward_seconds/slow_sevens"] == m["perf/reward_seconds/slow_sevens"]
    err = " ".join(capsys.readouterr().err.split())
    assert "[gpgrl] warning: reward 'slow_sevens' took 3." in err and "(perf/reward_seconds/slow_sevens)" in err


def test_a_user_reward_with_a_timeout_is_stopped_and_counted(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLOW_REWARD_SECONDS", "60")  # the worker process inherits it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    history = _train_in_process(tmp_path, rewards=[{"name": "helpers:slow_sevens", "timeout": 1.0},
                                                   {"name": "helpers:count_sevens"}],
                                algorithm={"preset": "gpg", "max_resample_draws": 1},
                                train={"steps": 1, "prompts_per_step": 4})
    m = history[0]
    assert m["perf/reward_seconds/slow_sevens"] < 45  # the worker's start-up included; the reward alone sleeps 60
    assert m["reward/failures"] == 16.0
    err = " ".join(capsys.readouterr().err.split())
    assert "reward 'slow_sevens' gave no result within its time limit of 1 s" in err


def test_a_timeout_is_only_for_user_rewards():
    from gpgrl.config import RewardSpec
    from gpgrl.rewards.scoring import as_reward_functions

    with pytest.raises(ValueError, match="timeout is for your own rewards"):
        as_reward_functions([RewardSpec(name="accuracy", timeout=3.0)])


def test_an_unreachable_hub_fails_within_the_limit_whatever_the_name_lookup_does(monkeypatch, tmp_path):
    """A resolver that hangs, or a name with many addresses whose packets are dropped, must not multiply the
    limit (the issue saw 40 s offline before the message)."""
    import socket

    from gpgrl.models.loading import check_hub_reachable

    def hanging_lookup(*_args, **_kw):
        time.sleep(30)
        raise socket.gaierror("never answered")

    monkeypatch.chdir(tmp_path)  # no runs/ folder here: 'runs/model' is read as a Hub id
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    start = time.monotonic()
    with pytest.raises(OSError, match=r"model 'runs/model' is not in the local Hugging Face cache and the Hub "
                                      r"\(huggingface.co\) cannot be reached \(no answer within 1 s\)"):
        check_hub_reachable("runs/model", timeout=1.0)
    assert time.monotonic() - start < 15  # 1 s limit; 30 s without the bound


# --- README and defaults -----------------------------------------------------------------------------------

def test_eval_quiet_prints_no_loading_bars(setup, tmp_path):
    proc = gpgrl("eval", "--model", str(setup["model"]), "--benchmarks", "arithmetic", "--limit", "2",
                 "--max-new-tokens", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "arithmetic" in proc.stdout and "pass@1" in proc.stdout
    assert "Loading weights" not in proc.stderr and "it/s]" not in proc.stderr, proc.stderr


def test_loading_bars_also_hold_back_bars_drawn_with_tqdm_directly():
    """transformers unpacks a GGUF file under a plain tqdm bar, which its progress-bar switch does not reach:
    while a model loads quietly (--quiet, or stderr not a terminal: a log), that bar is held back, any other
    line written to stderr meanwhile still comes out, and the libraries' bar settings come back after."""
    script = """
import sys, warnings
from transformers.utils import logging as hf_logging
from gpgrl.models.loading import loading_bars
quiet = sys.argv[1] == "quiet"
before = hf_logging.is_progress_bar_enabled()
with loading_bars("model.gguf", quiet=quiet):
    from tqdm.auto import tqdm  # as transformers' GGUF loader draws its bar
    for _ in tqdm(range(3), desc="unpacking GGUF"):
        pass
    print("a warning while loading", file=sys.stderr)
assert hf_logging.is_progress_bar_enabled() == before
"""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env["PYTHONPATH"] = str(REPO / "src")
    for mode in ("quiet", "log"):  # --quiet, and a plain run whose stderr is a file or a pipe
        proc = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "unpacking GGUF" not in proc.stderr and "a warning while loading" in proc.stderr, proc.stderr


def test_near_misses_get_a_suggestion_and_listings_have_no_duplicates():
    from gpgrl.config import ConfigError, apply_overrides, help_rows
    from gpgrl.rewards.registry import get_reward

    with pytest.raises(ConfigError, match=r"unknown config section 'rolout' in --rolout.temperature. Did you mean "
                                          r"'rollout.temperature'\?"):
        apply_overrides({}, {"rolout.temperature": "0.5"})
    with pytest.raises(ConfigError) as e:
        apply_overrides({}, {"nonsense": "1"})
    listed = str(e.value).split("Valid keys in the command line (use --section.key): ")[1].split(", ")
    assert len(listed) == len(set(listed)) and "model" in listed
    with pytest.raises(ValueError, match=r"unknown reward 'acuracy' \(did you mean 'accuracy'\?\)"):
        get_reward("acuracy")
    rows = {key: text for key, _, text in help_rows()}
    assert rows["data.sample_strategy"].endswith("[uniform | hard | soft | medium]")
    assert ".gguf" in rows["model.name_or_path"] and "smollm2" in rows["model.name_or_path"]


def test_group_size_below_two_names_the_real_minimum():
    from gpgrl.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=r"rollout.group_size must be >= 2, got 0"):
        from_dict({"model": {"name_or_path": "m"}, "data": {"dataset": "d.jsonl"}, "rollout": {"group_size": 0}})


def test_an_interrupted_evaluation_keeps_its_rows_and_the_same_command_continues(tmp_path, capsys):
    from gpgrl.eval.evaluator import PARTIAL_FILE, evaluate
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.rollout.engine import HFGenerateEngine

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0)

    class Counting(HFGenerateEngine):
        def __init__(self, stop_after: int | None = None):
            super().__init__(model, tok)
            self.prompts, self.stop_after = 0, stop_after

        def generate(self, prompts, params, num_samples):
            if self.stop_after is not None and self.prompts >= self.stop_after:
                raise KeyboardInterrupt
            self.prompts += len(prompts)
            # decoded greedily whatever is asked, so a resumed evaluation can be compared row by row
            return super().generate(prompts, dataclasses.replace(params, temperature=0.0), num_samples)

    kw = dict(samples=2, temperature=1.0, max_new_tokens=4, batch_size=4, limit=6, show_progress=False,
              show_table=False, seed=0)  # 2 problems (x 2 samples) per generate call
    out = tmp_path / "eval"
    first = Counting(stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        evaluate(None, tok, "arithmetic", engine=first, output_dir=out, **kw)
    kept = (out / PARTIAL_FILE).read_text().splitlines()
    assert len(kept) == 1 + 4 * 2  # the header, then 4 problems x 2 samples: two batches finished
    assert not (out / "results.json").exists()

    again = Counting()
    metrics = evaluate(None, tok, "arithmetic", engine=again, output_dir=out, **kw)
    assert again.prompts == 2  # only the problems not finished before
    assert "continuing in" in capsys.readouterr().err
    assert not (out / PARTIAL_FILE).exists()
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [(r["problem_index"], r["sample_index"]) for r in rows] == [(i, s) for i in range(6) for s in range(2)]

    whole = tmp_path / "whole"  # greedy: the same rows as an evaluation never interrupted
    assert evaluate(None, tok, "arithmetic", engine=Counting(), output_dir=whole, **kw) == metrics
    assert (whole / "samples.jsonl").read_text() == (out / "samples.jsonl").read_text()


def test_the_data_folder_comes_from_gpgrl_data_and_missing_data_skips_are_counted(tmp_path):
    env = {**os.environ, "GPGRL_DATA": str(tmp_path / "nowhere"), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_eval_cli.py",
                           "-k", "in_process or subprocess"], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (f"2 tests skipped: benchmark data not found under {tmp_path / 'nowhere'}; set GPGRL_DATA to the folder "
            "holding math/ and vision/ to run them") in proc.stdout


@pytest.mark.parametrize("setup_name", ["TEXT", "VISION"])
def test_the_quickstart_plot_title_fits_the_figure(setup_name):
    """With a 10 % margin for wider fonts (the vision title in one line took 96 % of the width, and was cut
    where the font was wider)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpgrl.tasks import quickstart

    fig, ax = plt.subplots(figsize=(7, 4))  # as quickstart._plot draws it
    text = ax.set_title(quickstart.plot_title(getattr(quickstart, setup_name).title), fontsize=10)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    box, frame = text.get_window_extent(renderer), fig.bbox
    plt.close(fig)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1
    assert box.width <= 0.9 * frame.width


def test_ctrl_c_during_an_evaluation_says_what_was_kept(setup, tmp_path, monkeypatch, capsys):
    import gpgrl.eval.evaluator as evaluator
    from gpgrl.eval.cli import main

    def interrupted(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluator, "evaluate", interrupted)
    out = tmp_path / "eval"
    assert main(["--model", str(setup["model"]), "--benchmarks", "arithmetic", "--limit", "2", "--quiet",
                 "--output", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"gpgrl eval: interrupted; finished batches are kept in {out}/samples.partial.jsonl and the same command "
        "continues from them")


def test_an_evaluation_of_another_model_does_not_reuse_partial_rows(setup, tmp_path):
    """The partial rows are reused only by the same evaluation of the same model files."""
    import shutil

    from gpgrl.eval.report import PARTIAL_FILE, _finished, _identity, _start_partial

    model = tmp_path / "model"
    shutil.copytree(setup["model"], model)
    config = {"model": str(model), "benchmarks": ["arithmetic"], "samples": 1, "seed": 0, "batch_size": 4}
    partial = tmp_path / "eval" / PARTIAL_FILE
    row = {"benchmark": "arithmetic", "problem_index": 0, "sample_index": 0}
    _start_partial(partial, config, [row])
    assert _finished(partial, {**config, "batch_size": 8}, 1) == [row]  # run-only settings may change
    assert _finished(partial, {**config, "seed": 1}, 1) == []
    (model / "config.json").write_text((model / "config.json").read_text() + " ")  # the folder saved over
    assert _finished(partial, config, 1) == []
    assert _identity(config)["model_files"][0][0] == "chat_template.jinja"


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(monkeypatch, capsys):
    import gpgrl.cli as cli

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "quickstart", interrupted)
    assert cli.main(["quickstart"]) == 130
    assert capsys.readouterr().err == "gpgrl quickstart: interrupted\n"


def test_torch_pins_agree_across_readme_pyproject_and_ci():
    """CI (.ci/run) is `make test`, whose set-up (scripts/setup.py) holds the pair; tests/test_first_run.py checks
    that the README's Tests section shows what it runs."""
    readme = (REPO / "README.md").read_text()
    setup = (REPO / "scripts" / "setup.py").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    pins = set(re.findall(r"torch==([\d.]+)\W+torchvision==([\d.]+)", readme + setup + pyproject))
    assert pins == set(re.findall(r"torch==([\d.]+)\W+torchvision==([\d.]+)", setup)) and len(pins) == 1
    assert re.findall(r"torch==([\d.]+)", pyproject) == [torch for torch, _ in pins] * 2  # both comments, CI's pin


def test_the_interrupt_line_names_the_step_and_the_last_checkpoint(tmp_path):
    from types import SimpleNamespace

    from gpgrl.cli import interrupted
    from gpgrl.train.trainer import TrainingInterrupted

    (tmp_path / "checkpoints" / "step-000002").mkdir(parents=True)
    cfg = SimpleNamespace(train=SimpleNamespace(steps=3, output_dir=str(tmp_path)))
    ckpt = tmp_path / "checkpoints" / "step-000002"
    assert interrupted(None, KeyboardInterrupt(), cfg) == "interrupted before training started; nothing was written"
    assert interrupted(SimpleNamespace(step=2, total_steps=3), KeyboardInterrupt(), cfg) == (
        f"interrupted at step 3 (2 done); last checkpoint: step 2 ({ckpt}); `gpgrl train ... --resume` continues from it")
    assert interrupted(SimpleNamespace(step=3, total_steps=3), KeyboardInterrupt(), cfg) == (
        f"interrupted after the last step (3), while saving; last checkpoint: step 2 ({ckpt}); `gpgrl train ... "
        "--resume` continues from it")
    assert interrupted(SimpleNamespace(step=2, total_steps=3), TrainingInterrupted(), cfg).startswith("stopped on Ctrl-C after step 2;")

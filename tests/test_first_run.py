"""A newcomer's first hour: a finished run is deleted only when the command line asks, and says what it
deletes; your own reward file beside your recipe is found (in every process, and in a time-limited reward's
worker) and its errors are one line; an output folder that is a file is one line; console lines read as the
plot they sit beside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from gpgrl.config import ConfigError, to_yaml
from gpgrl.recipe import load_config
from gpgrl.rewards.registry import RewardLoadError, get_reward
from gpgrl.rewards.scoring import as_reward_functions
from gpgrl.train import checkpoint

REPO = Path(__file__).resolve().parents[1]
RECIPE = "model: {name_or_path: tiny}\ndata: {dataset: 'builtin:arithmetic'}\n"
SHORT = "def short(completions, **_):\n    return [1.0 if len(c) < 5 else 0.0 for c in completions]\n"


# --- overwriting a run -------------------------------------------------------------------------------------

def test_no_shipped_recipe_deletes_a_run():
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert "overwrite" not in (raw.get("train") or {}) and "overwrite_output_dir" not in raw, path.name


def test_a_recipe_files_overwrite_is_ignored_and_only_the_command_line_sets_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE + "train: {overwrite: true, steps: 3}\n")
    with pytest.warns(UserWarning) as caught:
        cfg = load_config(recipe)
    assert [str(w.message) for w in caught] == [
        f"{recipe}: train.overwrite: true is ignored: a recipe never deletes a run; to replace the run in its output "
        "folder, pass --overwrite on the command line (--resume continues it)"]
    assert cfg.train.overwrite is False and cfg.train.steps == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for on the command line: no warning
        assert load_config(recipe, {"overwrite": "true"}).train.overwrite is True
        assert load_config(recipe, {"train.overwrite": "true"}).train.overwrite is True
        on_cli = load_config(tmp_path / "r.yaml", {"overwrite": "true"})
    # what the run records (config.yaml, checkpoints) never deletes when it is run again
    recorded = yaml.safe_load(to_yaml(on_cli.with_resolved(steps=3, max_prompt_length=8)))
    assert recorded["train"]["overwrite"] is False and on_cli.train.overwrite is True


def _old_run(out: Path) -> None:
    """A finished run's files with known sizes: 2,080 bytes, and a file of the user's."""
    for step in (50, 100):
        (out / "checkpoints" / f"step-{step:06d}").mkdir(parents=True)
        (out / "checkpoints" / f"step-{step:06d}" / "model.bin").write_bytes(b"w" * 1000)
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 2, 3)))  # 4 x 12
    (out / "samples.jsonl").write_text(json.dumps({"step": 1}) + "\n")  # 12
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events").write_bytes(b"e" * 10)
    (out / "eval" / "step-000100").mkdir(parents=True)
    (out / "eval" / "step-000100" / "results.json").write_text("{}")
    (out / "config.yaml").write_text("steps: 3")
    (out / "notes.txt").write_text("mine")


def test_overwrite_says_what_it_deletes_and_keeps_other_files(tmp_path):
    out = tmp_path / "run"
    _old_run(out)
    expected = ("2 checkpoints up to step 100, metrics.jsonl with 3 steps, samples.jsonl, TensorBoard logs, "
                "1 evaluation (eval/), config.yaml; 2.1 kB")  # 2000 + 48 + 12 + 10 + 2 + 8 = 2,080 bytes
    assert checkpoint.describe_run(out) == expected
    with pytest.raises(ValueError, match="Pass --resume to continue it, --overwrite to delete it"):
        checkpoint.prepare_output_dir(out, resume=False, overwrite=False)
    assert checkpoint.prepare_output_dir(out, resume=True, overwrite=False) is None  # resume keeps it all
    said = checkpoint.prepare_output_dir(out, resume=False, overwrite=True)
    assert said == f"--overwrite: deleted the previous run in {str(out)!r}: {expected}"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert checkpoint.prepare_output_dir(out, resume=False, overwrite=True) is None  # nothing left to delete


def test_an_output_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(ValueError) as e:
        checkpoint.check_output_dir(mine, resume=False, overwrite=True)
    assert str(e.value) == f"train.output_dir {str(mine)!r} is a file, not a folder; choose another folder (--output_dir DIR)"
    with pytest.raises(ValueError) as e:
        checkpoint.check_output_dir(mine / "run", resume=True, overwrite=False)
    assert str(e.value) == (f"train.output_dir {str(mine / 'run')!r} cannot be a folder: {str(mine)!r} above it is a "
                            "file; choose another folder (--output_dir DIR)")
    assert mine.read_text() == "mine"


def test_the_trainer_refuses_a_file_before_it_builds_anything(tmp_path):
    """Trainer.from_config checks the folder first: here the model it names does not exist, and the error is
    the folder's, not the model's."""
    from gpgrl.config import from_dict
    from gpgrl.train.trainer import Trainer

    (tmp_path / "out").write_text("a file")
    cfg = from_dict({"model": {"name_or_path": str(tmp_path / "no-such-model")}, "data": {"dataset": "builtin:arithmetic"},
                     "train": {"output_dir": str(tmp_path / "out")}})
    with pytest.raises(ValueError, match=r"is a file, not a folder"):
        Trainer.from_config(cfg)


def _quickstart(argv: list[str], capsys) -> tuple[int, str]:
    from gpgrl.tasks.quickstart import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_the_quickstart_never_replaces_a_run_without_overwrite(tmp_path, capsys):
    out = tmp_path / "qs"
    (out / "sft").mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps({"quickstart": "vision", "seed": 0, "accuracy_before": 0.54,
                                                  "accuracy_after": 0.77, "steps": 150}))
    code, err = _quickstart(["--vision", "--output", str(out)], capsys)
    assert code == 2 and err == (
        f"gpgrl quickstart: error: {out} already holds a finished vision quickstart run (seed 0: 54.0% -> 77.0% in 150 "
        f"GPG steps): `gpgrl quickstart --vision --overwrite` replaces it, `gpgrl quickstart --vision --output "
        f"{tmp_path / 'qs-2'}` keeps it\n")
    (out / "summary.json").unlink()  # a run stopped before its end is not replaced silently either
    code, err = _quickstart(["--output", str(out)], capsys)
    assert code == 2 and "already holds an unfinished quickstart run (no summary.json): `gpgrl quickstart --overwrite`" in err
    (out / "notes.txt").write_text("mine")  # a folder with files of its own: never, even with --overwrite
    code, err = _quickstart(["--output", str(out), "--overwrite"], capsys)
    assert code == 2 and err == (
        f"gpgrl quickstart: error: {out} holds files that a quickstart does not write (notes.txt), which it never "
        f"deletes: choose a new folder, e.g. `gpgrl quickstart --output {tmp_path / 'qs-2'}`\n")
    code, err = _quickstart(["--output", str(out / "notes.txt")], capsys)
    assert code == 2 and err == f"gpgrl quickstart: error: --output {str(out / 'notes.txt')!r} is a file, not a folder; " \
                                "choose another folder\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sft"]


def gpgrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``gpgrl ARGS`` as a user runs it, from ``cwd``, with only this checkout's src/ on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("GPGRL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_only_the_command_line_deletes_a_finished_run(tmp_path):
    """A recipe's `train: {overwrite: true}` is ignored with a warning, and the folder holding a run is refused
    before anything loads (the model named here does not exist: the error is the folder's); `--overwrite`
    replaces the run and says what it deleted."""
    from gpgrl.models.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    run = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {{name_or_path: {model}}}\ndata: {{dataset: 'builtin:arithmetic'}}\n"
                      "rewards: [{name: accuracy}]\nrollout: {group_size: 2, max_completion_length: 4}\n"
                      f"train: {{steps: 1, prompts_per_step: 2, micro_batch_size: 4, output_dir: {run}, overwrite: true}}\n"
                      "log: {progress: false, sample_every: 0, report_to: [jsonl]}\n")
    first = gpgrl("train", "--config", str(recipe), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = sorted((str(p.relative_to(run)), p.stat().st_size) for p in run.rglob("*") if p.is_file())
    again = gpgrl("train", "--config", str(recipe), "--model", str(tmp_path / "no-such-model"), cwd=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.splitlines() == [
        f"gpgrl train: warning: {recipe}: train.overwrite: true is ignored: a recipe never deletes a run; to replace "
        "the run in its output folder, pass --overwrite on the command line (--resume continues it)",
        f"gpgrl train: error: train.output_dir {str(run)!r} already holds a run (checkpoints, metrics.jsonl). Pass "
        "--resume to continue it, --overwrite to delete it and start afresh (on the command line: a recipe never "
        "deletes a run), or choose another --output_dir."]
    assert sorted((str(p.relative_to(run)), p.stat().st_size) for p in run.rglob("*") if p.is_file()) == before
    replaced = gpgrl("train", "--config", str(recipe), "--overwrite", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    (line,) = [x for x in replaced.stderr.splitlines() if "--overwrite:" in x]
    assert line.startswith(f"[gpgrl] --overwrite: deleted the previous run in {str(run)!r}: 1 checkpoint up to step 1, "
                           "metrics.jsonl with 1 step, config.yaml; ")


def test_a_broken_reward_file_is_one_line_and_debug_shows_the_traceback(tmp_path):
    recipe = _project(tmp_path / "project", SHORT.replace("return [", "return ("))  # line 2: '(' never closed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = gpgrl("train", "--config", str(recipe), "--dry-run", cwd=elsewhere)
    file = (tmp_path / "project" / "myrewards.py").resolve()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"gpgrl train: error: rewards: reward '{file}:short': importing it failed at {file} line 2: ")
    assert line.endswith("; fix the file (--debug shows the traceback)")
    debug = gpgrl("train", "--config", str(recipe), "--dry-run", "--debug", cwd=elsewhere)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "SyntaxError" in debug.stderr


# --- your own reward file ----------------------------------------------------------------------------------

def _project(root: Path, reward_source: str, module: str = "myrewards", extra: str = "") -> Path:
    """A user's folder: a recipe and the reward module beside it; returns the recipe."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(reward_source)
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE + f"rewards:\n- {{name: '{module}:short', weight: 1.0{extra}}}\n")
    return recipe


def test_a_reward_file_beside_the_recipe_is_found_from_any_folder(tmp_path, monkeypatch):
    recipe = _project(tmp_path / "project", SHORT)
    monkeypatch.chdir(tmp_path)  # not the recipe's folder, and it is on no PYTHONPATH
    assert str(tmp_path / "project") not in sys.path
    cfg = load_config(recipe)
    assert cfg.rewards[0].name == f"{(tmp_path / 'project' / 'myrewards.py').resolve()}:short"
    (fn,) = as_reward_functions(cfg.rewards)
    assert fn.name == "short" and fn.fn(["1+2", "a long answer"]) == [1.0, 0.0]


def test_a_time_limited_reward_file_loads_in_its_worker_process(tmp_path, monkeypatch):
    """The worker is a fresh interpreter whose PYTHONPATH has no user folder: it loads the file by its path."""
    recipe = _project(tmp_path / "project", SHORT, module="worker_rewards", extra=", timeout: 30")
    monkeypatch.chdir(tmp_path)
    (fn,) = as_reward_functions(load_config(recipe).rewards)
    assert type(fn.fn).__name__ == "TimeLimited"
    assert fn.fn(["1+2", "a long answer"]) == [1.0, 0.0]


def test_two_folders_with_the_same_file_name_never_mix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _project(tmp_path / "a", "def short(completions, **_):\n    return [0.25 for _ in completions]\n", "same_name")
    b = _project(tmp_path / "b", "def short(completions, **_):\n    return [0.75 for _ in completions]\n", "same_name")
    (fa,), (fb,) = as_reward_functions(load_config(a).rewards), as_reward_functions(load_config(b).rewards)
    assert fa.fn(["x"]) == [0.25] and fb.fn(["x"]) == [0.75]


def test_a_reward_file_that_does_not_import_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "broken_syntax.py"
    bad.write_text("import math\n\ndef short(completions, **_):\n    return [len(c) for c in completions\n")
    with pytest.raises(RewardLoadError) as e:
        get_reward(f"{bad}:short")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"reward '{bad}:short': importing it failed at {bad} line 4: ")
    assert message.endswith("('return [len(c) for c in completions'); fix the file (--debug shows the traceback)")
    crash = tmp_path / "crash_on_import.py"
    crash.write_text("SCALE = 1\nLIMIT = SCALE / 0\n")
    with pytest.raises(RewardLoadError) as e:
        get_reward(f"{crash}:short")
    assert str(e.value) == (f"reward '{crash}:short': importing it failed at {crash} line 2: ZeroDivisionError: "
                            "division by zero; fix the file (--debug shows the traceback)")
    missing = tmp_path / "needs_a_package.py"
    missing.write_text("import no_such_package_xyz\n")
    with pytest.raises(RewardLoadError, match=rf"at {missing} line 1: ModuleNotFoundError: No module named "
                                              r"'no_such_package_xyz'; install it in this environment, or fix the import"):
        get_reward(f"{missing}:short")
    typo = tmp_path / "typo.py"
    typo.write_text(SHORT)
    with pytest.raises(RewardLoadError, match=r"has no 'shrot'; did you mean 'short'\?"):
        get_reward(f"{typo}:shrot")


def test_a_reward_module_found_nowhere_names_the_folders_searched(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    recipe = tmp_path / "project" / "recipe.yaml"
    recipe.write_text(RECIPE + "rewards: ['nowhere_rewards:short']\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert str(e.value) == (
        f"reward 'nowhere_rewards:short': no module 'nowhere_rewards': no nowhere_rewards.py in "
        f"'{(tmp_path / 'project').resolve()}' or '{tmp_path.resolve()}' (the recipe's folder, then the one you run "
        "from), and none installed or on PYTHONPATH; put the file there, give its path "
        "('path/to/nowhere_rewards.py:short'), or add its folder to PYTHONPATH")
    with pytest.raises(ConfigError, match=r"no file 'lib/none\.py' in"):
        load_config(recipe, {"rewards": "lib/none.py:short"})


def test_a_package_beside_the_recipe_keeps_its_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "project" / "myrewardpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "scale.py").write_text("FACTOR = 0.5\n")
    (pkg / "scores.py").write_text("from .scale import FACTOR\n\ndef half(completions, **_):\n"
                                   "    return [FACTOR for _ in completions]\n")
    recipe = tmp_path / "project" / "recipe.yaml"
    recipe.write_text(RECIPE + "rewards: ['myrewardpkg.scores:half']\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(recipe)
    assert cfg.rewards[0].name == f"{(pkg / 'scores.py').resolve()}:half"
    (fn,) = as_reward_functions(cfg.rewards)
    assert fn.fn(["a", "b"]) == [0.5, 0.5]


@pytest.mark.distributed
@pytest.mark.skipif(not Path(sys.executable).with_name("accelerate").exists(), reason="accelerate launcher not installed")
def test_two_processes_find_the_reward_file_beside_the_recipe(tmp_path):
    """`accelerate launch -m gpgrl.cli train --config project/recipe.yaml` from another folder, with no PYTHONPATH
    to the project: both processes load the reward file (one reward in process, the other in each process's
    time-limited worker), and both give the same values."""
    from gpgrl.models.tiny import save_tiny_model

    project = tmp_path / "project"
    project.mkdir()
    model = save_tiny_model(project / "model")
    (project / "sevens.py").write_text("def sevens(completions, **_):\n"
                                       "    return [c.count('7') / max(len(c), 1) for c in completions]\n")
    (project / "train.jsonl").write_text("".join(json.dumps({"question": f"{a}+{a}", "answer": str(2 * a)}) + "\n"
                                                 for a in range(8)))
    (project / "recipe.yaml").write_text(
        f"model: {{name_or_path: {model}}}\ndata: {{dataset: {project / 'train.jsonl'}}}\n"
        "rewards:\n- {name: 'sevens:sevens'}\n- {name: 'sevens.py:sevens', timeout: 60}\n"
        "rollout: {group_size: 2, max_completion_length: 4}\n"
        f"train: {{steps: 1, prompts_per_step: 2, micro_batch_size: 2, output_dir: {tmp_path / 'run'}}}\n"
        "log: {progress: false, sample_every: 0, report_to: [jsonl]}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes",
                           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", "29531", "-m", "gpgrl.cli", "train", "--config", "../project/recipe.yaml"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["reward/failures"] == 0.0 and row["adv/num_samples"] == 4.0
    assert row["reward/sevens"] == row["reward/sevens_2"]  # the same function, in process and in the worker
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert [r["name"] for r in recorded["rewards"]] == [f"{(project / 'sevens.py').resolve()}:sevens"] * 2


# --- console lines -----------------------------------------------------------------------------------------

def test_notices_are_never_wrapped_in_a_log_file(tmp_path, capsys):
    """Outside a terminal rich wraps at 80 columns; a warning in a log must stay one line (greppable)."""
    from gpgrl.train.logging import MetricsLogger

    logger = MetricsLogger(tmp_path, report_to=[], enabled=True, total_steps=1, progress=False)
    text = "[gpgrl] warning: " + " ".join(f"word{i}" for i in range(40))  # 277 characters
    logger.message(text)
    logger.close()
    assert capsys.readouterr().err == text + "\n"


def test_the_vision_quickstart_prints_what_its_plot_shows():
    """The plot shows the accuracy of the sampled answers and the held-out accuracy; the console line starts
    with both, and labels the training reward (accuracy + 0.5 x the format reward, up to 1.5) as such."""
    from gpgrl.tasks.quickstart import VISION, rl_config, step_line

    row = {"reward/accuracy": 0.62, "reward/mean": 1.43, "adv/alpha": 1.0, "rollout/completion_length": 6.0}
    line = step_line(40, 150, row, 0.77, 100, 120.0, rl_config(setup=VISION)["rewards"])
    assert line == ("[quickstart] GPG step  40/150  sampled answers 62% right  held-out accuracy (100 questions) 77%  "
                    "reward 1.43 (accuracy + 0.5 x answer_only)  alpha 1.00  length 6.0  [120s]")
    assert VISION.chance == 0.25


# --- the two set-up commands -------------------------------------------------------------------------------

def _setup_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpgrl_setup_script", REPO / "scripts" / "setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_make_test_ci_and_the_readme_run_the_same_commands():
    import doctest

    setup = _setup_script()
    assert doctest.testmod(setup).failed == 0
    makefile = (REPO / "Makefile").read_text()
    assert "\t$(PYTHON) scripts/setup.py test $(ARGS)\n" in makefile
    assert "\t$(PYTHON) scripts/setup.py quickstart $(ARGS)\n" in makefile
    assert (REPO / ".ci" / "run").read_text().rstrip().splitlines()[-1] == "exec python3 scripts/setup.py test"
    steps = setup.plan("test", REPO, [], python_version="", installed=False, system_python="python3")
    assert [" ".join(s.command) for s in steps] == [
        "python3 -m venv .venv", ".venv/bin/python -m pip install --upgrade pip",
        ".venv/bin/python -m pip install torch==2.14.1 torchvision==0.29.1",
        ".venv/bin/python -m pip install -e .[dev,vision]", "ruff check src tests benchmarks scripts",
        "bash tests/vllm_contract/install.sh", "bash tests/mathverify_contract/install.sh", "pytest -m not slow"]
    readme = (REPO / "README.md").read_text()
    tests = readme[readme.index("## Tests"):]
    tests = tests[:tests.index("\n## ", 4)]
    assert "make test" in tests  # the one command first, then what it runs, step by step
    for _, command in setup.TEST_COMMANDS:
        shown = " ".join(c if " " not in c else f'"{c}"' for c in command)
        assert shown in tests, shown
    assert f"pip install {' '.join(setup.TORCH_PAIR)}" in readme


def test_a_second_set_up_skips_what_is_done_and_redoes_it_when_pyproject_changes(tmp_path, capsys):
    setup = _setup_script()
    repo = tmp_path / "checkout"
    (repo / ".venv").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'gpgrl'\n")

    def planned(installed: bool = True) -> list[str]:
        return [s.skip or "runs" for s in setup.plan("quickstart", repo, ["--vision"], python_version="3.11.7",
                                                     installed=installed)]

    fresh = planned()
    assert fresh == ["there (Python 3.11.7)", "runs", "runs", "runs", "runs"]  # no stamp yet
    stamp = setup.stamp(repo, "vision", "3.11.7", "")
    setup.stamp_path(repo, "vision").write_text(json.dumps(stamp))
    done = "up to date (stamp matches pyproject.toml, the torch pair and the extras)"
    assert planned() == ["there (Python 3.11.7)", done, done, done, "runs"]  # only the quickstart runs
    assert planned(installed=False) == fresh  # gpgrl gone from .venv (or installed from another checkout)
    (repo / "pyproject.toml").write_text("[project]\nname = 'gpgrl'\nversion = '0.2'\n")
    assert planned() == fresh  # a changed pyproject.toml installs again
    # the test set-up has its own stamp (other extras): the quickstart's does not make it up to date
    steps = setup.plan("test", repo, [], python_version="3.11.7", installed=True)
    assert [s.skip for s in steps][1:4] == ["", "", ""]
    # no Python in .venv: run() plans every step; --dry-run prints them with the total and runs none
    assert setup.run("test", ["-x"], dry_run=True, repo=repo) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"[setup test] 1/8 Python environment .venv: {sys.executable} -m venv .venv"
    assert out[-2] == "[setup test] 8/8 tests: pytest -m 'not slow' -x"
    assert out[-1].startswith("[setup test] would run 8 of 8 steps (0 up to date) in ")
    assert not (repo / ".venv" / "bin").exists()

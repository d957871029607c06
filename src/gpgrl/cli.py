"""The ``gpgrl`` command: train, evaluate and inspect Group Policy Gradient runs."""

from __future__ import annotations

import sys

USAGE = """usage: gpgrl COMMAND [options]

Group Policy Gradient (GPG) for reasoning models, with GRPO / Dr. GRPO / DAPO presets.

commands:
  quickstart   CPU demo, no download: a tiny model learns 2-digit addition with GPG (a few minutes)
  train        train a model from a YAML recipe:  gpgrl train --config RECIPE.yaml [--section.key VALUE ...]
  eval         evaluate a model on math and vision benchmarks:  gpgrl eval --model PATH_OR_ID --benchmarks math500
  presets      list the algorithm presets (gpg, grpo, dr_grpo, dapo), one line each with what they change
  rewards      list the reward functions with their parameters and defaults
  data         write the local data files of the shipped recipes:  gpgrl data prepare simplelr_level3to5
  models       a real model with no hub and no compiler:  gpgrl models fetch smollm2  (list: what is installed)
  doctor       what a bug report needs, and what each feature is missing (versions, GPU, extras, data)

`gpgrl COMMAND --help` explains each command; `gpgrl train --help` lists every recipe option with its
default, by section, the most-changed ones first (TRL / open-r1 names such as --num_generations work too).
Errors are one line; --debug (or GPGRL_DEBUG=1) shows their traceback. Documentation: README.md and docs/
in the source repository.
"""

TRAIN_USAGE = """usage: gpgrl train [--config RECIPE.yaml] [--section.key VALUE ...] [--dry-run [--num-processes N]]

Train a model with GPG (or another preset). Values on the command line override the recipe. A recipe is
gpgrl's YAML (recipes/) or the original GPG / open-r1 flat YAML, translated key by key (docs/recipes.md;
--original_script NAME says which of the original's scripts it was written for, and the original's own
--key value options are read as its train.sh passes them). --dry-run checks a recipe without loading a
model (rewards, dataset columns, batch arithmetic for N processes) and prints the effective settings.

examples:
  gpgrl train --config recipes/quickstart_cpu.yaml --steps 20 --preset grpo
  gpgrl train --config RECIPE.yaml --resume                      # continue the run in its output_dir
  gpgrl train --config config_simple_rl_gpg.yaml --original_script openr1_gpg --dry-run --num-processes 8
  accelerate launch --num_processes 8 -m gpgrl.cli train --config recipes/qwen2.5-math-7b_gpg.yaml
"""

TRL_NAMES = """TRL / open-r1 names (--num_generations, --learning_rate, --beta, --max_completion_length, ...) work too
with a gpgrl recipe: each is translated as the open-r1 recipe reader translates it, and one line on stderr
says what it became; a name with no single meaning here is answered with the gpgrl flags to use.
The table: docs/recipes.md, "TRL / open-r1 names on the command line"."""


def _parse_overrides(args: list[str]) -> tuple[str | None, dict[str, str]]:
    """``--config F --a.b 1 --c=2 --flag`` -> ("F", {"a.b": "1", "c": "2", "flag": "true"}).

    >>> _parse_overrides(["--config", "r.yaml", "--train.steps", "3", "--resume"])
    ('r.yaml', {'train.steps': '3', 'resume': 'true'})
    """
    config, overrides = None, {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}; options look like --section.key value (gpgrl train --help)")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                value = "true"  # a bare flag such as --resume
        if key == "config":
            config = value
        else:
            overrides[key] = value
        i += 1
    return config, overrides


def train_help() -> str:
    """``gpgrl train --help``: usage, the most-changed settings with their short forms, the TRL names, then
    every option by section (all from :func:`gpgrl.config.help_sections`)."""
    from gpgrl.config import ALIASES, MOST_CHANGED, help_sections

    sections = help_sections()
    rows = {key: (default, text) for _, _, section_rows in sections for key, default, text in section_rows}
    short = {target: alias for alias, target in ALIASES.items()}
    flags = {key: (f"--{short[key]}, " if key in short else "") + f"--{key}" for key in MOST_CHANGED}
    width = max(len(k) for k in rows) + 4
    top_width = max(len(f) for f in flags.values()) + 2

    def line(flag: str, key: str, w: int) -> str:
        default, text = rows[key]
        return f"  {flag:<{w}} {text} (default: {default})"

    out = [TRAIN_USAGE, "most-changed settings (short form, full key):"]
    out += [line(flags[key], key, top_width) for key in MOST_CHANGED]
    others = [f"--{alias} (--{target})" for alias, target in ALIASES.items() if target not in MOST_CHANGED]
    out += [f"  other short forms: {', '.join(others)}", "", TRL_NAMES, "", "all options, by section:",
            f"  --{'config RECIPE.yaml':<{width - 2}} YAML recipe (see recipes/)"]
    for name, doc, section_rows in sections:
        out += ["", f"{name}: {doc}"]
        out += [line(f"--{key}", key, width) for key, _, _ in section_rows]
    return "\n".join(out)


def cmd_train(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(train_help())
        return 0
    import warnings

    from gpgrl.config import ConfigError
    from gpgrl.recipe import load_recipe
    from gpgrl.runtime import error, is_main_process

    try:
        path, overrides = _parse_overrides(args)
        dry = overrides.pop("dry-run", overrides.pop("dry_run", "false")).lower() in ("true", "1", "yes")
        processes = int(overrides.pop("num-processes", overrides.pop("num_processes", "1")))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if dry:
                from gpgrl.dry_run import dry_run

                checked = dry_run(path, overrides, num_processes=processes)
            else:
                cfg, _ = load_recipe(path, overrides, note=_note)
        for w in caught:  # the recipe's warnings, with a dry run too
            if is_main_process():
                print(f"gpgrl train: warning: {w.message}", file=sys.stderr)
        if dry:
            print(checked)
            return 0
    except (ConfigError, ValueError) as e:
        if debug():
            raise
        error("train", one_line(e))
        return 2
    from gpgrl.train.trainer import Trainer, TrainingError

    trainer = None
    try:
        trainer = Trainer.from_config(cfg)
        trainer.train()
    except (ValueError, FileNotFoundError, OSError, ImportError) as e:
        if debug() or trainer is not None:  # after set-up these are the package's own errors or bugs
            raise
        error("train", one_line(e) + _quickstart_hint(cfg.model.name_or_path, e))
        return 2
    except TrainingError as e:
        if debug():
            raise
        if is_main_process():
            print(f"gpgrl train: stopped: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        if debug():
            raise
        if is_main_process():
            print(f"gpgrl train: {interrupted(trainer, e, cfg)}", file=sys.stderr, flush=True)
        return 130
    if trainer.acc.is_main_process:
        print(f"done: {trainer.step} steps; checkpoints and metrics.jsonl in {cfg.train.output_dir}")
    return 0


def _note(line: str) -> None:
    """A line saying what a TRL / open-r1 name on the command line became, on stderr (main process only)."""
    from gpgrl.runtime import is_main_process

    if is_main_process():
        print(f"gpgrl train: {line}", file=sys.stderr)


def _quickstart_hint(model: str, e: BaseException) -> str:
    """For a quickstart recipe run before ``gpgrl quickstart``: the model folder it trains is written by the
    quickstart's warm-start, so say to run that first."""
    from pathlib import Path

    parts = Path(model).parts
    if isinstance(e, FileNotFoundError) and len(parts) == 3 and parts[0] == "runs" and parts[2] == "sft" \
            and parts[1].startswith("quickstart") and not Path(model).exists():
        vision = " --vision" if parts[1].endswith("vision") else ""
        return f" ({model} is the warm-started model `gpgrl quickstart{vision}` writes: run that first, here)"
    return ""


def interrupted(trainer, e: KeyboardInterrupt, cfg) -> str:
    """What a Ctrl-C stopped and what was kept, in one line."""
    from gpgrl.train import checkpoint
    from gpgrl.train.trainer import TrainingInterrupted

    if trainer is None:
        return "interrupted before training started; nothing was written"
    latest = checkpoint.latest_checkpoint(cfg.train.output_dir)
    kept = f"last checkpoint: step {int(latest.name.split('-')[1])} ({latest})" if latest else "no checkpoint yet"
    again = "`gpgrl train ... --resume` continues from it" if latest else "`--resume` starts again from step 0"
    if isinstance(e, TrainingInterrupted):
        return f"stopped on Ctrl-C after step {trainer.step}; {kept}; {again}"
    if trainer.step >= trainer.total_steps:  # train.steps, or those of train.epochs
        return f"interrupted after the last step ({trainer.step}), while saving; {kept}; {again}"
    return f"interrupted at step {trainer.step + 1} ({trainer.step} done); {kept}; {again}"


PRESETS_USAGE = """usage: gpgrl presets [NAME | --yaml]

List the algorithm presets: each one's name, what it is (method and paper), and the settings it changes
relative to gpg. `gpgrl presets NAME` prints every setting of one preset as YAML; `--yaml` prints them all.
A recipe picks one with algorithm: {preset: NAME} (or --preset NAME) and overrides any setting with
--algorithm.KEY VALUE."""


def presets_listing() -> str:
    """One line per preset: name, description, and the settings it changes relative to gpg."""
    from gpgrl.algorithms.presets import DESCRIPTIONS, PRESETS, changes_from_gpg

    width = max(len(n) for n in PRESETS) + 2
    lines = []
    for name in PRESETS:
        changed = changes_from_gpg(name)
        what = ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else "(the reference)"
        lines.append(f"{name:<{width}}{DESCRIPTIONS[name]}  | changes: {what}")
    return "\n".join([*lines, "", "gpgrl presets NAME prints every setting of one; override any with "
                       "--algorithm.KEY VALUE"])


def cmd_presets(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(PRESETS_USAGE)
        return 0
    import yaml

    from gpgrl.algorithms.presets import DESCRIPTIONS, PRESETS, get_preset
    from gpgrl.runtime import error

    def dump(name: str) -> str:
        return yaml.safe_dump({k: v for k, v in get_preset(name).to_dict().items() if k != "name"}, sort_keys=False)

    if not args:
        print(presets_listing())
    elif args == ["--yaml"]:
        print("\n".join(f"# {name}\n{dump(name)}" for name in PRESETS))
    elif len(args) == 1 and not args[0].startswith("-"):
        try:
            name = get_preset(args[0]).name
        except ValueError as e:
            error("presets", one_line(e))
            return 2
        print(f"# {name}: {DESCRIPTIONS[name]}\n{dump(name)}", end="")
    else:
        error("presets", f"unexpected arguments {' '.join(args)}; usage: gpgrl presets [NAME | --yaml]")
        return 2
    return 0


def cmd_rewards(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print("usage: gpgrl rewards [NAME ...]\n\nList the registered reward functions (or the ones named): a one-line "
              "summary and each\nparameter with its default (set them in a recipe: rewards: [{name: cosine, params: "
              "{max_len: 1000}}]).")
        return 0
    from gpgrl.rewards.registry import describe_reward, list_rewards, reward_aliases

    aliases: dict[str, list[str]] = {}
    for alias, name in reward_aliases().items():
        aliases.setdefault(name, []).append(alias)
    known = list_rewards()
    asked = [reward_aliases().get(a, a) for a in args]
    for arg, name in zip(args, asked):
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name.lstrip("-"), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            what = "option" if arg.startswith("-") else "reward"
            print(f"gpgrl rewards: error: unknown {what} {arg!r}{hint} (usage: gpgrl rewards [NAME ...]; valid "
                  f"names: {', '.join(known)})", file=sys.stderr)
            return 2
    for name in asked or known:
        summary, params = describe_reward(name)
        also = f" (also: {', '.join(aliases[name])})" if name in aliases else ""
        print(f"{name}{also}\n    {summary}")
        for param, default in params:
            print(f"    {param} = {default!r}")
    return 0


def cmd_eval(args: list[str]) -> int:
    from gpgrl.eval.cli import main as eval_main

    return eval_main(args)


def cmd_data(args: list[str]) -> int:
    from gpgrl.data.prepare import main as data_main

    return data_main(args)


def cmd_doctor(args: list[str]) -> int:
    from gpgrl.doctor import main as doctor_main

    return doctor_main(args)


def cmd_models(args: list[str]) -> int:
    from gpgrl.model_files import main as models_main

    return models_main(args)


def cmd_quickstart(args: list[str]) -> int:
    from gpgrl.tasks.quickstart import main as quickstart_main

    return quickstart_main(args)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "quickstart": cmd_quickstart, "presets": cmd_presets,
            "rewards": cmd_rewards, "data": cmd_data, "models": cmd_models, "doctor": cmd_doctor}


def debug() -> bool:
    """Whether errors show their traceback (``--debug`` or ``GPGRL_DEBUG=1``)."""
    import os

    return os.environ.get("GPGRL_DEBUG", "").lower() in ("1", "true", "yes")


def one_line(e: BaseException) -> str:
    """An error's message on one line."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def deliberate(e: BaseException) -> bool:
    """Whether the package raised ``e`` on purpose: its class (ConfigError, TrainingError, the engines'
    EngineError, DatasetError, CheckpointError, ...) is defined in gpgrl. Anything else is a bug: traceback."""
    return any(cls.__module__.split(".")[0] == "gpgrl" for cls in type(e).__mro__)


def main(argv: list[str] | None = None) -> int:
    import os

    from gpgrl.runtime import close_process_group, error, is_main_process

    argv = sys.argv[1:] if argv is None else argv
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ["GPGRL_DEBUG"] = "1"  # what every command's error handling reads (debug())
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from gpgrl import __version__

        print(f"gpgrl {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"gpgrl: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)} (gpgrl --help)", file=sys.stderr)
        return 2
    try:
        return command(argv[1:])
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        if debug():
            raise
        if is_main_process():
            print(f"gpgrl {argv[0]}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as e:
        if debug() or not deliberate(e):
            raise
        error(argv[0], f"{one_line(e)} (--debug shows the traceback)")
        return 1
    finally:
        close_process_group()


if __name__ == "__main__":
    sys.exit(main())

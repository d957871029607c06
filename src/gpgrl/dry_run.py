"""``gpgrl train --config R --dry-run``: check a recipe completely without loading a model.

What it checks: the config (types, choices, presets, prompt templates), every reward's name and
parameters (each is built), the dataset's columns on a local file or a built-in task (a Hub id is
reported as not checked, since that needs the network), the vision extra when the recipe has images,
and the batch arithmetic for the given number of processes. It prints the effective settings and,
for an open-r1 style recipe, what each original key became (for a gpgrl recipe, what each TRL / open-r1
name on the command line became). Problems raise
:class:`~gpgrl.config.ConfigError` with the fix; a local data file that is not there is a warning line
(``warning: ...``) naming how to prepare it, and so is a missing vision extra, since the recipe itself can
be sound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def reward_semantics(specs: list[Any]) -> list[str]:
    """One line per reward: its weight, what it scores (the registered reward's summary, which starts with
    its name) and every parameter in effect, those the recipe gives marked ``(recipe)``, the rest the
    reward's defaults.

    >>> from gpgrl.config import RewardSpec
    >>> print(reward_semantics([RewardSpec("reasoning_steps", 0.5, {"min_steps": 2})])[0])
      0.5 x reasoning_steps: r = min(1, n / min_steps), n = number of step markers (open-r1). params: min_steps=2 (recipe)
    """
    from gpgrl.rewards.math_rewards import GRADER_PARAMS, ORIGINAL
    from gpgrl.rewards.registry import describe_reward, list_rewards, reward_aliases

    lines = []
    for spec in specs:
        given = dict(spec.params or {})
        if spec.name in list_rewards() or spec.name in reward_aliases():
            summary, defaults = describe_reward(spec.name)
        else:  # a user function ("module:function"): no registered summary or defaults
            summary, defaults = f"{spec.name}: your own function", []
        if given.get("semantics") == ORIGINAL:  # the original's answer check: gpgrl's grader settings unused
            defaults = [(k, v) for k, v in defaults if k not in GRADER_PARAMS]
        params = [f"{k}={given.pop(k)!r} (recipe)" for k, _ in defaults if k in given]
        params += [f"{k}={v!r} (recipe)" for k, v in given.items()]
        params += [f"{k}={v!r}" for k, v in defaults if k not in (spec.params or {})]
        lines.append(f"  {spec.weight:g} x {summary}" + (f" params: {', '.join(params)}" if params else ""))
    return lines


def logprob_temperature(tempered: bool, temperature: float) -> str:
    """The temperature of the loss's log-probs, in words.

    >>> print(logprob_temperature(True, 0.7))  # doctest: +NORMALIZE_WHITESPACE
    loss log-probs: tempered, log softmax(logits / T) with T = rollout.temperature = 0.7, the distribution
    sampled from (algorithm.tempered_logprobs: true)
    >>> print(logprob_temperature(False, 0.7))  # doctest: +NORMALIZE_WHITESPACE
    loss log-probs: untempered, log softmax(logits) (T = 1), while sampling at T = 0.7
    (algorithm.tempered_logprobs: false)
    """
    if tempered:
        return (f"loss log-probs: tempered, log softmax(logits / T) with T = rollout.temperature = {temperature:g}, "
                "the distribution sampled from (algorithm.tempered_logprobs: true)")
    return (f"loss log-probs: untempered, log softmax(logits) (T = 1), while sampling at T = {temperature:g} "
            "(algorithm.tempered_logprobs: false)")


def dry_run(path: str | None, overrides: dict[str, str] | None = None, *, num_processes: int = 1) -> str:
    """The dry run's report text; raises ConfigError on the first problem."""
    from gpgrl.config import ConfigError, total_steps
    from gpgrl.data.datasets import LOCAL_FORMATS, DatasetError, check_columns, load_records
    from gpgrl.data.prepare import preparer_for
    from gpgrl.recipe import load_recipe
    from gpgrl.rewards.scoring import as_reward_functions
    from gpgrl.train.build import build_objective

    if num_processes < 1:
        raise ConfigError(f"--num-processes must be >= 1, got {num_processes}")
    translated: list[str] = []
    cfg, report = load_recipe(path, overrides, num_processes=num_processes, note=translated.append)
    lines = [f"recipe: {path or '(command line only)'}  [{'open-r1 style, translated' if report else 'gpgrl'}]"]
    if report is not None:
        lines += ["what each original key became:", report.text()]
    if translated:
        lines += ["TRL / open-r1 names on the command line:", *(f"  {line}" for line in translated)]

    try:
        rewards = as_reward_functions(cfg.rewards)
    except ValueError as e:
        raise ConfigError(f"rewards: {e}") from e  # --debug shows the cause (a reward file's own traceback)
    lines.append("rewards: " + ", ".join(f"{r.name} x {r.weight:g}" for r in rewards) + "  [built]")
    lines += reward_semantics(cfg.rewards)
    r = cfg.rollout
    if r.multi_turn:  # the tools are loaded (schemas from their docstrings) and the environment built once
        from gpgrl.rollout.episodes import episode_setup

        try:
            setup = episode_setup(tools=r.tools, environment=r.environment, environment_params=r.environment_params,
                                  max_turns=r.max_turns, tool_timeout=r.tool_timeout,
                                  tool_call_format=r.tool_call_format)
        except (ValueError, ImportError) as e:
            raise ConfigError(f"rollout: {e}") from e
        assert setup is not None
        what = (f"tools {', '.join(setup.toolbox.names)} ({r.tool_call_format} calls, {r.tool_timeout:g} s per call)"
                if setup.toolbox is not None else f"environment {r.environment}")
        setup.close()
        lines.append(f"episodes: {what}; at most {r.max_turns} turns and {r.max_completion_length} tokens after the "
                     "prompt (tool tokens included, not trained)  [built]")

    d, t = cfg.data, cfg.train
    steps = t.steps  # with train.epochs, known once the dataset is loaded
    local = d.dataset.startswith("builtin:") or Path(d.dataset).expanduser().exists()
    if local:
        try:
            records = load_records(d.dataset, split=d.split, subset=d.subset, **d.dataset_kwargs)
            records = records[: d.max_samples] if d.max_samples else records
            columns = {"data.prompt_column": d.prompt_column, "data.answer_column": d.answer_column}
            if d.image_column:
                columns["data.image_column"] = d.image_column
            check_columns(records, columns, d.dataset)
        except (DatasetError, FileNotFoundError) as e:
            raise ConfigError(f"data: {e}") from None
        lines.append(f"dataset: {d.dataset}: {len(records)} records, columns {', '.join(sorted(records[0]))}  [checked]")
        if t.epochs is not None:
            steps = total_steps(cfg, len(records))
            lines.append(f"train.epochs {t.epochs:g} -> train.steps {steps}")
    elif Path(d.dataset).suffix.lower() in LOCAL_FORMATS or d.dataset.startswith(("/", ".", "~")):
        # The recipe can be sound without its data on this machine: say how to get it, do not fail.
        name = preparer_for(d.dataset)
        how = (f"prepare it with `gpgrl data prepare {name}` (docs/recipes.md, \"Local data\")" if name
               else "docs/recipes.md, \"Local data\", says how to prepare the shipped recipes' data")
        lines.append(f"warning: data.dataset: no such file {d.dataset!r} (relative paths are read from the working "
                     f"directory, {Path.cwd()}); columns not checked; {how}")
        if t.epochs is not None:
            lines.append(f"train.epochs {t.epochs:g}: steps follow from the dataset's size when it is loaded")
    else:
        lines.append(f"dataset: {d.dataset}: a Hugging Face id, not checked offline")
        if t.epochs is not None:
            lines.append(f"train.epochs {t.epochs:g}: steps follow from the dataset's size when it is loaded")
    if d.image_column:
        from gpgrl.models.vision import require_vision

        try:
            require_vision()
        except ImportError as e:  # the machine lacks an extra; the recipe itself can be sound
            lines.append(f"warning: this recipe has images and needs the vision extra to train: {e}")

    if t.prompts_per_step % num_processes:
        raise ConfigError(f"train.prompts_per_step={t.prompts_per_step} is not a multiple of {num_processes} processes: "
                          "every process needs whole groups; change one of them")
    G = cfg.rollout.group_size
    local_answers = t.prompts_per_step // num_processes * G
    lines.append(
        f"batch: {t.prompts_per_step} prompts x G={G} = {t.prompts_per_step * G} answers per step over {num_processes} "
        f"process(es): {local_answers} per process, {-(-local_answers // t.micro_batch_size)} micro-batch(es) of "
        f"<= {t.micro_batch_size}; " + (f"{steps} steps" if t.epochs is None or local else f"{t.epochs:g} epochs")
    )
    algo = cfg.algo
    lines.append("algorithm: " + ", ".join(f"{k}={v}" for k, v in algo.to_dict().items()))
    objective = build_objective(cfg)  # your own is loaded now, and a setting an objective refuses fails here
    needs = [k.replace("_", " ") for k, v in vars(objective.needs).items() if v and k != "importance"]
    lines.append(f"objective: {type(objective).__module__}.{type(objective).__name__}"
                 + (f" (needs {', '.join(needs)})" if needs else ""))
    lines.append(logprob_temperature(algo.tempered_logprobs, cfg.rollout.temperature))
    # the algorithm's effective settings are the preset's with the recipe's keys applied: all of them
    effective = {**cfg.to_dict(), "algorithm": {"preset": algo.name, **{k: v for k, v in algo.to_dict().items()
                                                                        if k != "name"}}}
    effective["train"]["steps"] = steps
    lines += ["effective settings:", yaml.safe_dump(effective, sort_keys=False).rstrip(), "dry run OK: nothing loaded"]
    return "\n".join(lines)

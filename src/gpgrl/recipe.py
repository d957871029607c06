"""Reading a recipe: a YAML file in gpgrl's sections, or a flat open-r1 / original-GPG recipe translated
by :mod:`gpgrl.openr1`, then the command line's overrides.

It sits above both :mod:`gpgrl.config` (the typed settings) and :mod:`gpgrl.openr1` (the translation,
which speaks the config's vocabulary), so neither imports the other back.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gpgrl.config import ALIASES, TOP_LEVEL_KEYS, Config, ConfigError, apply_overrides, from_dict, help_rows
from gpgrl.openr1 import (
    TranslationError,
    command_line_names,
    is_flat_recipe,
    split_overrides,
    translate,
    translate_command_line,
)


def load_config(path: str | Path | None = None, overrides: dict[str, str] | None = None) -> Config:
    """Read a YAML recipe (or none) and apply command-line overrides.

    An open-r1 / original-GPG style flat recipe is translated first (:mod:`gpgrl.openr1`); its keys with
    no meaning here are named in one warning.
    """
    return load_recipe(path, overrides)[0]


def load_recipe(path: str | Path | None = None, overrides: dict[str, str] | None = None, *,
                num_processes: int | None = None, note: Callable[[str], None] | None = None) -> tuple[Config, Any]:
    """:func:`load_config`, also returning the translation report of a flat recipe (None for a native one).

    With a native recipe (or none), TRL / open-r1 names among the overrides are translated
    (:func:`command_line`); ``note`` receives the line saying what each became.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass a YAML recipe (see recipes/)")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections (model:, data:, ...)")
    report = None
    if is_flat_recipe(raw):
        try:  # the original's own keys on the command line (its train.sh's) set the flat recipe's
            flat, overrides = split_overrides(overrides or {})
            raw, report = translate({**raw, **flat}, num_processes=num_processes,
                                    native_keys=TOP_LEVEL_KEYS)
        except TranslationError as e:
            raise ConfigError(f"{path}: {e}") from None
        if report.ignored:
            warnings.warn(f"{path}: keys with no meaning in gpgrl, ignored: {', '.join(report.ignored)}", stacklevel=2)
    translated: list[str] = []
    overrides = command_line(overrides or {}, translate_names=report is None, num_processes=num_processes,
                             note=translated.append)
    try:
        cfg = from_dict(apply_overrides(raw, overrides))
    except ConfigError as e:
        raise ConfigError(named_by(str(e), translated)) from None
    for line in translated if note is not None else ():  # said once the settings are known to be valid
        note(line)
    return cfg, report


def named_by(message: str, translated: list[str]) -> str:
    """An error ``message`` about a setting that a TRL name set, with that name as the user typed it.

    >>> named_by("optim.lr must be float, got 'abc'", ["--learning_rate abc -> --optim.lr abc"])
    "optim.lr must be float, got 'abc' (from --learning_rate abc)"
    """
    for line in translated:
        given, became = line.split(" -> ", 1)
        if any(re.search(rf"\b{re.escape(key)}\b", message) for key in re.findall(r"(?:^| )--([\w.]+)", became)):
            return f"{message} (from {given})"
    return message


def command_line(overrides: dict[str, Any], *, translate_names: bool = True, num_processes: int | None = None,
                 note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """gpgrl's overrides from the command line's: every key checked, TRL / open-r1 names translated.

    A key is one of gpgrl's (``section.key``, a short form such as ``--lr``, ``--rewards``; a short form wins
    over a TRL name of the same spelling, ``--seed`` and ``--output_dir``, which mean the same), or with
    ``translate_names`` a TRL / open-r1 name (:func:`gpgrl.openr1.translate_command_line`: ``note`` gets one
    line per name saying what it became; names with no meaning here are warned about once). Anything else is
    refused with the closest option (:func:`suggest_option`).

    >>> command_line({"num_generations": "4", "lr": "1e-5"}, note=print)
    --num_generations 4 -> --rollout.group_size 4
    {'lr': '1e-5', 'rollout.group_size': 4}
    >>> command_line({"lerning_rate": "1e-5"})
    Traceback (most recent call last):
    ...
    gpgrl.config.ConfigError: unknown config key 'lerning_rate'; did you mean --learning_rate (TRL's name for --optim.lr)? `gpgrl train --help` lists every option
    """
    known = {key for key, _, _ in help_rows()} | set(ALIASES) | {"rewards"}
    names = command_line_names() if translate_names else {}
    ours, theirs = {}, {}
    for key, value in overrides.items():
        if key in known:
            ours[key] = value
        elif key.replace("-", "_") in names:
            theirs[key] = value
        else:
            hint = suggest_option(key)
            raise ConfigError(f"unknown config key {key!r}" + (f"; did you mean {hint}?" if hint else "") +
                              " `gpgrl train --help` lists every option")
    if not theirs:
        return ours
    try:
        translated, lines, ignored = translate_command_line(theirs, num_processes=num_processes)
    except TranslationError as e:
        raise ConfigError(str(e)) from None
    given = {ALIASES.get(k, k): k for k in ours}
    for target in translated:
        if target in given:  # the line that set it names the TRL name(s)
            source = next(line for line in lines if f" --{target} " in f" {line.split(' -> ')[1]} ").split(" -> ")[0]
            raise ConfigError(f"{source} and --{given[target]} both set {target}; keep one")
    if ignored:
        warnings.warn("command line: TRL / open-r1 names with no meaning in gpgrl, ignored: " +
                      ", ".join(f"--{k}" for k in ignored), stacklevel=2)
    for line in lines if note is not None else ():
        note(line)
    return {**ours, **translated}


def suggest_option(key: str) -> str | None:
    """The option a misspelt ``--key`` most likely meant: one of gpgrl's (``--section.key``, a short form) or a
    TRL / open-r1 name, as a flag (with what a TRL name becomes).

    >>> suggest_option("train.stepz"), suggest_option("train.lr"), suggest_option("num_generation")
    ('--train.steps', '--optim.lr', "--num_generations (TRL's name for --rollout.group_size)")
    >>> suggest_option("temprature"), suggest_option("nonsense") is None
    ('--rollout.temperature', True)
    """
    dotted = [k for k, _, _ in help_rows()]
    leaves: dict[str, str] = {}
    for k in dotted:
        leaves.setdefault(k.rpartition(".")[2], f"--{k}")
    candidates = {**{a: f"--{a}" for a in ALIASES}, **{k: f"--{k}" for k in dotted}, "rewards": "--rewards"}
    for leaf, flag in leaves.items():
        candidates.setdefault(leaf, flag)
    for name, target in command_line_names().items():
        candidates.setdefault(name, f"--{name}" + (f" (TRL's name for {target})" if target else ""))
    name = key.replace("-", "_")
    leaf = name.rpartition(".")[2]
    if "." in name and leaf in leaves:  # the right key in the wrong section: --train.lr
        return leaves[leaf]
    for query, pool in ((name, candidates), (leaf, leaves)):
        hit = difflib.get_close_matches(query, list(pool), n=1, cutoff=0.7)
        if hit:
            return pool[hit[0]]
    return None

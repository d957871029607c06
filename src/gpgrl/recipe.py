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

from gpgrl.config import (
    ALIASES,
    TOP_LEVEL_KEYS,
    Config,
    ConfigError,
    apply_overrides,
    coerce,
    from_dict,
    help_rows,
)
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
    no meaning here are named in one warning. A recipe file never deletes a run: its ``train.overwrite``
    (a flat recipe's ``overwrite_output_dir``) is dropped with a warning; only ``overrides`` (the command
    line's ``--overwrite``) set it.
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
    flat_recipe = is_flat_recipe(raw)
    ignored = _drop_overwrite(raw, flat_recipe)
    if ignored and not _overwrite_given(overrides or {}):
        original = (" (the original's scripts never read it either: they resume from the folder's last "
                    "checkpoint)" if flat_recipe else "")
        warnings.warn(f"{path}: {ignored}: true is ignored{original}: a recipe never deletes a run; to replace "
                      "the run in its output folder, pass --overwrite on the command line (--resume continues "
                      "it)", stacklevel=2)
    if flat_recipe:
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
    folders = [Path(path).resolve().parent] if path is not None else []
    for spec in cfg.rewards:  # your own rewards, found beside the recipe the same way in every process
        spec.name = resolve_user_reward(spec.name, [*folders, Path.cwd()])
    for key in ("objective", "preset"):  # your own objective ('file.py:Class'), found as your own rewards are
        value = cfg.algorithm.get(key)
        if isinstance(value, str) and ":" in value:
            try:
                cfg.algorithm[key] = resolve_user_reward(value, [*folders, Path.cwd()])
            except ConfigError as e:
                raise ConfigError(f"algorithm.{key}: {str(e).replace('reward ', 'objective ', 1)}") from None
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

def resolve_user_reward(name: str, folders: list[Path]) -> str:
    """Your own reward as every process (and a time-limited reward's worker) will load it.

    ``name`` is ``"module:function"`` or ``"path/to/file.py:function"``; registered names (no colon) are
    returned as they are. The module's file (``module.py``, or ``module/__init__.py``; dotted names as
    folders) or the given file is looked for in ``folders`` in order (the recipe's folder, then the one
    the command runs from) and, when found there, named by its absolute path, so that no process depends on
    ``PYTHONPATH`` or on the folder it was started in. A module found in none of them must be installed or
    on ``PYTHONPATH``; else ConfigError names the folders searched and the fixes.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "myrewards.py").write_text("def short(completions, **_): ...")
    ...     resolve_user_reward("myrewards:short", [Path(d)]) == f"{Path(d).resolve() / 'myrewards.py'}:short"
    True
    >>> resolve_user_reward("accuracy", []), resolve_user_reward("gpgrl.data.shapes:answer_only", [])
    ('accuracy', 'gpgrl.data.shapes:answer_only')
    """
    import importlib.util

    from gpgrl.user_code import is_file_reference

    if ":" not in name:
        return name
    module, _, function = name.rpartition(":")
    searched = list(dict.fromkeys(f.resolve() for f in folders))
    where = " or ".join(repr(str(f)) for f in searched) or "(no folder)"
    if is_file_reference(module):
        given = Path(module).expanduser()
        for candidate in [given] if given.is_absolute() else [f / given for f in searched]:
            if candidate.is_file():
                return f"{candidate.resolve()}:{function}"
        raise ConfigError(f"reward {name!r}: no file {module!r} in {where}; give the path of a Python file, "
                          "absolute or relative to the recipe's folder")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ConfigError(f"reward {name!r}: your own reward is given as 'module:function' (a file module.py "
                          "next to the recipe, or an installed module) or 'path/to/file.py:function'")
    relative = Path(*module.split("."))
    for folder in searched:
        for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            if candidate.is_file():
                return f"{candidate.resolve()}:{function}"
    try:
        installed = importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        installed = False
    if installed:
        return name
    raise ConfigError(f"reward {name!r}: no module {module!r}: no {relative.with_suffix('.py')} in {where} "
                      "(the recipe's folder, then the one you run from), and none installed or on PYTHONPATH; "
                      f"put the file there, give its path ('path/to/{relative.name}.py:{function}'), or add its "
                      "folder to PYTHONPATH")


def _drop_overwrite(raw: dict[str, Any], flat: bool) -> str | None:
    """Remove the recipe file's overwrite setting (``train.overwrite``, or a flat recipe's
    ``overwrite_output_dir``): deleting a run is asked for on the command line only. Returns the key's name
    when the file set it true (else None).

    >>> raw = {"train": {"steps": 3, "overwrite": True}}
    >>> _drop_overwrite(raw, flat=False), raw
    ('train.overwrite', {'train': {'steps': 3}})
    >>> _drop_overwrite({"overwrite_output_dir": False}, flat=True) is None
    True
    """
    if flat:
        key, value = "overwrite_output_dir", raw.pop("overwrite_output_dir", False)
    else:
        train = raw.get("train")
        if not isinstance(train, dict) or "overwrite" not in train:
            return None
        raw["train"] = {k: v for k, v in train.items() if k != "overwrite"}
        key, value = "train.overwrite", train["overwrite"]
    return key if coerce(value, bool, key) else None


def _overwrite_given(overrides: dict[str, str]) -> bool:
    """Whether the command line asks to overwrite (``--overwrite``, ``--train.overwrite``, the original's
    ``--overwrite_output_dir``)."""
    return any(str(overrides.get(k, "false")).lower() in ("true", "1", "yes", "on")
               for k in ("overwrite", "train.overwrite", "overwrite_output_dir"))

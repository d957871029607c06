"""Reading a recipe: a YAML file in gpgrl's sections, or a flat open-r1 / original-GPG recipe translated
by :mod:`gpgrl.openr1`, then the command line's overrides.

It sits above both :mod:`gpgrl.config` (the typed settings) and :mod:`gpgrl.openr1` (the translation,
which speaks the config's vocabulary), so neither imports the other back.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from gpgrl.config import TOP_LEVEL_KEYS, Config, ConfigError, apply_overrides, from_dict
from gpgrl.openr1 import TranslationError, is_flat_recipe, split_overrides, translate


def load_config(path: str | Path | None = None, overrides: dict[str, str] | None = None) -> Config:
    """Read a YAML recipe (or none) and apply command-line overrides.

    An open-r1 / original-GPG style flat recipe is translated first (:mod:`gpgrl.openr1`); its keys with
    no meaning here are named in one warning.
    """
    return load_recipe(path, overrides)[0]


def load_recipe(path: str | Path | None = None, overrides: dict[str, str] | None = None, *,
                num_processes: int | None = None) -> tuple[Config, Any]:
    """:func:`load_config`, also returning the translation report of a flat recipe (None for a native one)."""
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
    return from_dict(apply_overrides(raw, overrides or {})), report

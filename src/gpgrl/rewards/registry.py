"""Reward registry: one signature for every reward, lookup by name or by ``"module:function"``.

A *reward function* scores a batch of completions::

    fn(completions: list[str], **columns) -> list[float | None]

``columns`` holds the dataset columns as lists aligned with ``completions`` (the gold answer as
``answer=[...]``, the prompt as ``prompts=[...]``); a reward reads the columns it needs and must accept
and ignore the rest through ``**kwargs``. ``None`` for an item means "could not be computed": the
trainer turns it into NaN and leaves that sample out of its group.

Built-in rewards are registered as *factories*, ``make(**params) -> RewardFn``, whose keyword
arguments are the reward's hyperparameters with their defaults, so that a recipe entry
``{name: cosine, weight: 2.0, params: {max_len: 1000}}`` becomes ``get_reward("cosine", max_len=1000)``.

>>> fn = get_reward("tag_count")
>>> fn(["<think>\\nhm\\n</think>\\n<answer>\\n4\\n</answer>"], answer=["4"])
[1.0]
>>> "accuracy" in list_rewards()
True
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

__all__ = ["RewardFactory", "RewardFn", "RewardLoadError", "describe_reward", "get_reward", "list_rewards",
           "register_reward", "reward_aliases"]


class RewardFn(Protocol):
    """``fn(completions, **columns) -> list[float | None]`` (see the module docstring)."""

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]: ...


RewardFactory = Callable[..., RewardFn]

_REGISTRY: dict[str, RewardFactory] = {}
#: Other names a reward is known by (the original code's name for it) -> its registered name.
_ALIASES: dict[str, str] = {}


def register_reward(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[RewardFactory], RewardFactory]:
    """Register ``make(**params) -> RewardFn`` under ``name`` (and under each of ``aliases``).

    The factory's keyword arguments (with defaults) are the reward's hyperparameters; the returned
    function is named ``name`` so that metrics can be logged as ``reward/<name>``, also when it was
    looked up by an alias.
    """

    def decorator(factory: RewardFactory) -> RewardFactory:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"a reward named {key!r} is already registered")
        _REGISTRY[name] = factory
        _ALIASES.update({alias: name for alias in aliases})
        return factory

    return decorator


def list_rewards() -> list[str]:
    """Names of the registered rewards, sorted (aliases not included)."""
    return sorted(_REGISTRY)


def reward_aliases() -> dict[str, str]:
    """``{alias: registered name}``, e.g. the original GPG code's ``format_v2``."""
    return dict(_ALIASES)


def _valid_params(factory: RewardFactory) -> list[str]:
    return [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def describe_reward(name: str) -> tuple[str, list[tuple[str, Any]]]:
    """``(summary, [(parameter, default), ...])`` of a registered reward (or alias), for ``gpgrl rewards``.

    >>> describe_reward("reasoning_steps")[1]
    [('min_steps', 3)]
    """
    factory = _REGISTRY[_ALIASES.get(name, name)]
    doc = " ".join((factory.__doc__ or "").strip().split("\n\n")[0].split())
    summary = doc.replace("``", "")
    params = [(p.name, p.default) for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return summary, params


class RewardLoadError(ValueError):
    """Your own reward (``"module:function"`` or ``"path/to/file.py:function"``) cannot be loaded: the
    message is one line naming the file, the line and the fix."""


def is_file_reference(module: str) -> bool:
    """Whether the module part of a user reward names a file (``rewards/mine.py``) rather than a module.

    >>> is_file_reference("mine.py"), is_file_reference("lib/mine.py"), is_file_reference("mypkg.mine")
    (True, True, False)
    """
    return module.endswith(".py") or "/" in module or os.sep in module


def _user_frame(e: BaseException, root: Path) -> tuple[str, int] | None:
    """The innermost traceback frame of ``e`` in the user's code (a file under ``root``, not an installed
    library): its file and line."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if f.filename.startswith(str(root)) and "site-packages" not in f.filename]
    return (frames[-1].filename, frames[-1].lineno or 0) if frames else None


def _failed_import(path: str, e: BaseException, root: Path | None) -> RewardLoadError:
    """The one-line error for a user reward module that raised while being imported."""
    if isinstance(e, SyntaxError):  # the file itself does not parse: its name, line and the offending code
        code = f" ({e.text.strip()!r})" if e.text and e.text.strip() else ""
        where = f"{e.filename} line {e.lineno}: {e.msg}{code}"
    else:
        frame = _user_frame(e, root) if root is not None else None
        where = f"{frame[0]} line {frame[1]}: " if frame else ""
        where += f"{type(e).__name__}: {e}"
    missing = isinstance(e, ModuleNotFoundError)
    fix = "install it in this environment, or fix the import" if missing else "fix the file"
    return RewardLoadError(f"reward {path!r}: importing it failed at {where}; {fix} (--debug shows the "
                           "traceback)")


def _import_file(file: Path, path: str) -> ModuleType:
    """Import the Python file ``file`` (a user reward given by its path), in every process that asks.

    A file inside a package (folders with ``__init__.py``) is imported as that package's module, with the
    package's parent folder added to the end of ``sys.path``; a lone file is imported under its own name
    (another name if that one is taken by another module), with its folder added to the end of
    ``sys.path`` so that it can import the files beside it.
    """
    file = file.resolve()
    if not file.is_file():
        raise RewardLoadError(f"reward {path!r}: no file {str(file)!r}; give the path of a Python file, "
                              "absolute or relative to the recipe's folder")
    root, parts = file.parent, [] if file.stem == "__init__" else [file.stem]
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if str(root) not in sys.path:
        sys.path.append(str(root))
    dotted = ".".join(parts)
    try:
        if root != file.parent or file.stem == "__init__":  # part of a package: keep its relative imports
            module = importlib.import_module(dotted)
        else:
            module = _import_lone_file(file, dotted)
    except Exception as e:
        raise _failed_import(path, e, root) from e
    loaded = Path(getattr(module, "__file__", "") or "").resolve()
    if loaded != file:
        raise RewardLoadError(f"reward {path!r}: module {dotted!r} is already imported from {str(loaded)!r}, "
                              f"not from {str(file)!r}; rename the package or the file")
    return module


def _import_lone_file(file: Path, name: str) -> ModuleType:
    """``file`` as a module named ``name``, or, when another module already has that name, a name made from
    the file's path (so that two recipes' ``myrewards.py`` in two folders never mix)."""
    import hashlib
    import importlib.util

    current = sys.modules.get(name)
    if current is not None and Path(getattr(current, "__file__", "") or "").resolve() == file:
        return current
    try:
        taken = current is not None or importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a name that is not a module name (my-rewards): no clash possible
        taken = False
    if taken:
        name = f"{name}_{hashlib.sha1(str(file).encode()).hexdigest()[:10]}"
        if name in sys.modules:
            return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(module_name: str, path: str) -> ModuleType:
    """Import ``module_name`` from the installed packages or ``PYTHONPATH``; a one-line error naming the
    fix when it is not there or fails while importing."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise RewardLoadError(
                f"reward {path!r}: no module {module_name!r} is installed or on PYTHONPATH; put its file next "
                "to the recipe (or in the folder you run from), give the file's path "
                "('path/to/file.py:function'), or add its folder to PYTHONPATH") from e
        raise _failed_import(path, e, _module_root(module_name)) from e
    except Exception as e:
        raise _failed_import(path, e, _module_root(module_name)) from e


def _module_root(module_name: str) -> Path | None:
    """The folder that holds ``module_name``'s top-level package or file, where it can be found."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module_name.split(".")[0])
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if not origin:
        return None
    top = Path(origin).resolve()
    return top.parent.parent if top.name == "__init__.py" else top.parent


def load_user_object(path: str, what: str = "reward") -> Any:
    """The callable named by ``"package.module:name"`` or ``"path/to/file.py:name"`` (a user's reward, tool or
    environment; ``what`` names it in the errors), imported as :func:`get_reward` imports a user reward."""
    module_name, _, attr = path.rpartition(":")  # rpartition: a file path may hold a drive's colon
    if not module_name or not attr:
        kind = "function" if what == "reward" else "name"
        raise RewardLoadError(f"{what} {path!r}: your own {what} is given as 'package.module:{kind}' or "
                              f"'path/to/file.py:{kind}'")
    if is_file_reference(module_name):
        module = _import_file(Path(module_name).expanduser(), path)
    else:
        module = _import_module(module_name, path)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            near = difflib.get_close_matches(part, names, n=1)
            hint = f"; it has: {', '.join(names[:10])}" if names else ""
            hint = f"; did you mean {near[0]!r}?" if near else hint
            where = getattr(module, "__file__", module_name)
            raise RewardLoadError(f"{what} {path!r}: {where} has no {attr!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardLoadError(f"{what} {path!r}: {attr!r} is not callable")
    return obj


def get_reward(name_or_path: str, **params: Any) -> RewardFn:
    """The reward function for a registered name, or a user function given as ``"module:function"``.

    Args:
        name_or_path: a name from :func:`list_rewards`, or ``"package.module:function"`` (installed or on
            ``PYTHONPATH``) or ``"path/to/file.py:function"`` for a user function with the reward signature.
        **params: the reward's hyperparameters (for a user function: bound with ``functools.partial``).

    Raises:
        ValueError: unknown name (the message lists the valid ones), unknown parameter (the message
            lists the reward's parameters); :class:`RewardLoadError` (a ValueError) for a user function that
            cannot be imported, in one line: the file, the line and the fix.

    >>> get_reward("cosine", max_len=500).__name__
    'cosine'
    >>> get_reward("acuracy")
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'acuracy' (did you mean 'accuracy'?); valid names: accuracy, choice_accuracy, classification, cosine, detection_confidence, detection_iou, environment, format, grounding_giou, length, r1v_accuracy, reasoning_steps, repetition_penalty, tag_count, think_close, token_length, tool_errors, visual_format; or give your own function as 'package.module:function'
    """
    name_or_path = _ALIASES.get(name_or_path, name_or_path)
    if name_or_path in _REGISTRY:
        factory = _REGISTRY[name_or_path]
        valid = _valid_params(factory)
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"reward {name_or_path!r} got unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(valid) if valid else '(none)'}"
            )
        fn = factory(**params)
        fn.__name__ = name_or_path  # type: ignore[attr-defined]
        if not fn.__doc__:
            fn.__doc__ = factory.__doc__  # the factory documents the formula and the parameters
        return fn
    if ":" in name_or_path:
        user_fn = load_user_object(name_or_path, "reward")
        if not params:
            return user_fn  # type: ignore[return-value]
        bound = functools.partial(user_fn, **params)
        functools.update_wrapper(bound, user_fn)
        return bound  # type: ignore[return-value]
    near = difflib.get_close_matches(name_or_path, [*list_rewards(), *_ALIASES], n=1)
    raise ValueError(
        f"unknown reward {name_or_path!r}{f' (did you mean {near[0]!r}?)' if near else ''}; valid names: "
        f"{', '.join(list_rewards())}; "
        "or give your own function as 'package.module:function'"
    )

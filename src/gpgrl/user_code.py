"""Your own code, named in a recipe: ``"package.module:name"`` or ``"path/to/file.py:name"``.

Rewards, tools, environments and objectives are found the same way (:func:`load_user_object`): a file path is
imported as a file (a file inside a package as that package's module), a dotted name from the installed
packages or ``PYTHONPATH``; whatever fails is one line naming the file, the line and the fix. This module is
at the bottom of the package's layers and imports nothing heavy, so a tool's worker process starts fast.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["UserCodeError", "is_file_reference", "load_user_object"]


class UserCodeError(ValueError):
    """Your own code (a reward, tool, environment or objective given as ``"module:name"`` or
    ``"path/to/file.py:name"``) cannot be loaded: the message is one line naming the file, the line and the fix."""


def is_file_reference(module: str) -> bool:
    """Whether the module part of a user reference names a file (``rewards/mine.py``) rather than a module.

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


def _failed_import(path: str, e: BaseException, root: Path | None, what: str) -> UserCodeError:
    """The one-line error for a user module that raised while being imported."""
    if isinstance(e, SyntaxError):  # the file itself does not parse: its name, line and the offending code
        code = f" ({e.text.strip()!r})" if e.text and e.text.strip() else ""
        where = f"{e.filename} line {e.lineno}: {e.msg}{code}"
    else:
        frame = _user_frame(e, root) if root is not None else None
        where = f"{frame[0]} line {frame[1]}: " if frame else ""
        where += f"{type(e).__name__}: {e}"
    missing = isinstance(e, ModuleNotFoundError)
    fix = "install it in this environment, or fix the import" if missing else "fix the file"
    return UserCodeError(f"{what} {path!r}: importing it failed at {where}; {fix} (--debug shows the "
                           "traceback)")


def _import_file(file: Path, path: str, what: str) -> ModuleType:
    """Import the Python file ``file`` (user code given by its path), in every process that asks.

    A file inside a package (folders with ``__init__.py``) is imported as that package's module, with the
    package's parent folder added to the end of ``sys.path``; a lone file is imported under its own name
    (another name if that one is taken by another module), with its folder added to the end of
    ``sys.path`` so that it can import the files beside it.
    """
    file = file.resolve()
    if not file.is_file():
        raise UserCodeError(f"{what} {path!r}: no file {str(file)!r}; give the path of a Python file, "
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
        raise _failed_import(path, e, root, what) from e
    loaded = Path(getattr(module, "__file__", "") or "").resolve()
    if loaded != file:
        raise UserCodeError(f"{what} {path!r}: module {dotted!r} is already imported from {str(loaded)!r}, "
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


def _import_module(module_name: str, path: str, what: str) -> ModuleType:
    """Import ``module_name`` from the installed packages or ``PYTHONPATH``; a one-line error naming the
    fix when it is not there or fails while importing."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise UserCodeError(
                f"{what} {path!r}: no module {module_name!r} is installed or on PYTHONPATH; put its file next "
                "to the recipe (or in the folder you run from), give the file's path "
                "('path/to/file.py:function'), or add its folder to PYTHONPATH") from e
        raise _failed_import(path, e, _module_root(module_name), what) from e
    except Exception as e:
        raise _failed_import(path, e, _module_root(module_name), what) from e


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
    environment; ``what`` names it in the errors), imported in every process that asks, by the same rules."""
    module_name, _, attr = path.rpartition(":")  # rpartition: a file path may hold a drive's colon
    if not module_name or not attr:
        kind = "function" if what == "reward" else "name"
        raise UserCodeError(f"{what} {path!r}: your own {what} is given as 'package.module:{kind}' or "
                              f"'path/to/file.py:{kind}'")
    if is_file_reference(module_name):
        module = _import_file(Path(module_name).expanduser(), path, what)
    else:
        module = _import_module(module_name, path, what)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            near = difflib.get_close_matches(part, names, n=1)
            hint = f"; it has: {', '.join(names[:10])}" if names else ""
            hint = f"; did you mean {near[0]!r}?" if near else hint
            where = getattr(module, "__file__", module_name)
            raise UserCodeError(f"{what} {path!r}: {where} has no {attr!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserCodeError(f"{what} {path!r}: {attr!r} is not callable")
    return obj

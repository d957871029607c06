"""The built-in tools by name, and the lookup of a tool given by name, ``module:function`` or file path.

>>> sorted(TOOLS)
['calculator', 'python']
>>> get_tool("calculator")("6*7")
'42'
>>> get_tool("calculater")
Traceback (most recent call last):
...
gpgrl.tools._types.ToolLoadError: unknown tool 'calculater' (did you mean 'calculator'?); valid names: calculator, python; or give your own function as 'package.module:function' or 'path/to/file.py:function'
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpgrl.tools._types import ToolLoadError
from gpgrl.tools.calculator import calculator
from gpgrl.tools.sandbox import python

__all__ = ["TOOLS", "get_tool", "importable_reference", "load_user_tool"]

#: The built-in tools by name.
TOOLS: dict[str, Callable[..., Any]] = {"calculator": calculator, "python": python}


def load_user_tool(spec: str) -> Callable[..., Any]:
    """Import a user's tool given as ``"package.module:function"`` or ``"path/to/file.py:function"`` (the
    same rules as a user reward, :func:`gpgrl.user_code.load_user_object`); one-line errors naming the fix."""
    from gpgrl.user_code import UserCodeError, load_user_object

    try:
        return load_user_object(spec, "tool")
    except UserCodeError as e:
        raise ToolLoadError(str(e)) from e


def get_tool(spec: str | Callable[..., Any]) -> Callable[..., Any]:
    """The tool function for a built-in name (:data:`TOOLS`), a ``"module:function"`` or
    ``"path/to/file.py:function"`` reference, or a callable (returned as it is)."""
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise ToolLoadError(f"a tool is a name, 'module:function', 'path/to/file.py:function' or a function, "
                            f"not {type(spec).__name__}")
    if spec in TOOLS:
        return TOOLS[spec]
    if ":" in spec:
        return load_user_tool(spec)
    near = difflib.get_close_matches(spec, list(TOOLS), n=1)
    raise ToolLoadError(
        f"unknown tool {spec!r}{f' (did you mean {near[0]!r}?)' if near else ''}; valid names: "
        f"{', '.join(sorted(TOOLS))}; or give your own function as 'package.module:function' or "
        "'path/to/file.py:function'")


def importable_reference(fn: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` (or ``"file.py:qualname"``) by which a fresh interpreter imports the same
    function, or None (a lambda, a closure, a function of ``__main__``, a partial, a builtin).

    >>> importable_reference(get_tool), importable_reference(lambda x: x)
    ('gpgrl.tools.registry:get_tool', None)
    """
    module_name, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module_name or not qualname or module_name == "__main__" or "<" in qualname:
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn:
        return None
    file = getattr(module, "__file__", None)
    try:  # where a fresh interpreter finds the name (not sys.modules: a file may be imported under another name)
        found = (importlib.machinery.PathFinder.find_spec(module_name) if "." not in module_name
                 else importlib.util.find_spec(module_name))
    except (ImportError, ValueError):
        found = None
    if found is not None and (not file or not found.origin or Path(found.origin).resolve() == Path(file).resolve()):
        return f"{module_name}:{qualname}"
    return f"{Path(file).resolve()}:{qualname}" if file and file.endswith(".py") else None

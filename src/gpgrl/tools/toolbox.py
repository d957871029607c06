"""The tools of a run: their schemas for the chat template, and the calls of policy turns run safely.

>>> box = Toolbox(["calculator"])
>>> box.names
['calculator']
>>> box.run('<tool_call>\\n{"name": "calculator", "arguments": {"expression": "1234*5678"}}\\n</tool_call>')
[ToolResult(name='calculator', content='7006652', error=None)]
>>> box.run("The answer is 7006652.") is None
True
>>> [r.error for r in box.run('<tool_call>{"name": "calc", "arguments": {}}</tool_call>'
...                           '<tool_call>{"name": "calculator", "arguments": {"expr": "1"}}</tool_call>'
...                           '<tool_call>{"name": "calculator", "arguments": {"expression": "1/0"}}</tool_call>'
...                           '<tool_call>{"name": calculator}</tool_call>')]
['unknown_tool', 'bad_arguments', 'exception', 'malformed']
>>> box.counts["calls"], box.counts["exception"]
(5, 1)
"""

from __future__ import annotations

import difflib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gpgrl.tools._process import ProcessTool, RemoteError, to_text
from gpgrl.tools._types import ERROR_KINDS, ToolCall, ToolFailed, ToolLoadError, ToolResult, ToolTimeout
from gpgrl.tools.formats import CALL_FORMATS
from gpgrl.tools.registry import get_tool, importable_reference
from gpgrl.tools.sandbox import python_tool

__all__ = ["Toolbox", "tool_schema"]

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
               type(None): "null"}


def tool_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a tool, as :func:`transformers.utils.get_json_schema` makes it from the function's
    type hints and Google-style docstring; a one-line :class:`ToolLoadError` naming the fix when it cannot.

    >>> tool_schema(get_tool("calculator"))["function"]["parameters"]["required"]
    ['expression']
    """
    from transformers.utils import chat_template_utils as ctu

    try:
        return ctu.get_json_schema(fn)
    except (ctu.DocstringParsingException, ctu.TypeHintParsingException) as e:
        name = getattr(fn, "__name__", repr(fn))
        detail = " ".join(str(e).split())
        raise ToolLoadError(
            f"tool {name!r} cannot be described to the model ({detail}); give every parameter a type hint and "
            "the function a docstring with a description and an 'Args:' section with one 'name: description' "
            "line per parameter (see gpgrl.tools.calculator)") from e


def _signature(name: str, parameters: dict[str, Any]) -> str:
    """``name(a: integer, b: string, c: number (optional))`` from a schema's parameters."""
    required = set(parameters.get("required", []))
    parts = []
    for arg, prop in parameters.get("properties", {}).items():
        kind = prop.get("type", "any")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        parts.append(f"{arg}: {kind}{'' if arg in required else ' (optional)'}")
    return f"{name}({', '.join(parts)})"


def _type_error(arg: str, value: Any, prop: dict[str, Any]) -> str | None:
    """Why ``value`` does not fit the schema property ``prop`` (top-level JSON type and enum), or None."""
    expected = prop.get("type")
    types = [expected] if isinstance(expected, str) else list(expected) if isinstance(expected, list) else []
    if prop.get("nullable"):
        types.append("null")
    got = _JSON_TYPES.get(type(value))
    known = {"boolean", "integer", "number", "string", "array", "object", "null"}
    if types and set(types) <= known:
        fits = got in types or (got == "integer" and "number" in types)
        if not fits:
            return f"{arg!r} must be {' or '.join(types)}, got {got or type(value).__name__}"
    if "enum" in prop and value not in prop["enum"] and not (value is None and "null" in types):
        return f"{arg!r} must be one of {', '.join(map(repr, prop['enum']))}, got {value!r}"
    return None


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Toolbox:
    """The tools of a run.

    Args:
        tools: registered names (``"calculator"``, ``"python"``), ``"package.module:function"``,
            ``"path/to/file.py:function"``, or functions. Each needs type hints and a Google-style docstring
            with an ``Args:`` section (its schema is made from them).
        timeout: wall-clock seconds per call.
        call_format: how the policy writes calls, a name in :data:`~gpgrl.tools.CALL_FORMATS`.
        max_result_chars: longest tool message; longer results keep their start and end around a marker.
        max_workers: most calls run at the same time by :meth:`run_many`.

    Where each tool runs: the built-in ``calculator`` in the calling thread (it is bounded); ``python`` in a
    fresh sandboxed process per call (:mod:`gpgrl.tools.sandbox`, its wall-clock limit is ``timeout``);
    a tool given as ``"module:function"`` or a file path, or a function that a fresh interpreter can import
    by its module and name, in a worker process that is killed at the limit (the tool's module-level state
    lives in that worker, not in this process); any other function (a lambda, a closure, a function of
    ``__main__``) in a daemon thread, which cannot be killed: past the limit its call is reported as a
    timeout and abandoned while it runs on.

    ``counts`` counts the calls (``"calls"``) and each error kind of :data:`ERROR_KINDS`.
    """

    def __init__(self, tools: Sequence[str | Callable[..., Any]], *, timeout: float = 10.0,
                 call_format: str = "hermes", max_result_chars: int = 2000, max_workers: int = 32) -> None:
        if not timeout > 0:
            raise ValueError(f"Toolbox timeout must be > 0 seconds, got {timeout}")
        if max_result_chars < 100:
            raise ValueError(f"Toolbox max_result_chars must be at least 100, got {max_result_chars}")
        if call_format not in CALL_FORMATS:
            near = difflib.get_close_matches(str(call_format), list(CALL_FORMATS), n=1)
            raise ValueError(f"unknown tool call format {call_format!r}"
                             f"{f' (did you mean {near[0]!r}?)' if near else ''}; valid formats: "
                             f"{', '.join(sorted(CALL_FORMATS))}; add one with gpgrl.tools.register_call_format")
        if isinstance(tools, str):
            tools = [t.strip() for t in tools.split(",") if t.strip()]
        self.timeout = float(timeout)
        self.call_format = CALL_FORMATS[call_format]
        self.max_result_chars = max_result_chars
        self.max_workers = max_workers
        self.names: list[str] = []
        self.functions: list[Callable[..., Any]] = []
        self.schemas: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter({"calls": 0, **dict.fromkeys(ERROR_KINDS, 0)})
        self._counts_lock = threading.Lock()
        self._runners: dict[str, Callable[[dict[str, Any]], str]] = {}
        self._parameters: dict[str, dict[str, Any]] = {}
        self._processes: list[ProcessTool] = []
        try:
            for spec in tools:
                self._add(spec)
        except BaseException:
            self.close()
            raise
        if not self.names:
            raise ValueError("Toolbox needs at least one tool (a name such as 'calculator', "
                             "'package.module:function' or 'path/to/file.py:function')")

    def _add(self, spec: str | Callable[..., Any]) -> None:
        if spec == "python":
            fn = python_tool(timeout=self.timeout, output_chars=self.max_result_chars)
        else:
            fn = get_tool(spec)
        schema = tool_schema(fn)
        name = schema["function"]["name"]
        if name in self._runners:
            raise ToolLoadError(f"two tools are named {name!r}; give each tool of a run its own function name")
        reference = None
        if isinstance(spec, str) and ":" in spec:
            module, _, attr = spec.rpartition(":")
            from gpgrl.user_code import is_file_reference

            reference = f"{Path(module).expanduser().resolve()}:{attr}" if is_file_reference(module) else spec
        elif not getattr(fn, "in_process", False):
            reference = importable_reference(fn)
        if getattr(fn, "in_process", False):
            runner: Callable[[dict[str, Any]], str] = lambda args, fn=fn: to_text(fn(**args))  # noqa: E731
        elif reference is not None:
            process = ProcessTool(reference)
            self._processes.append(process)
            runner = lambda args, process=process: process(args, self.timeout)  # noqa: E731
        else:
            runner = lambda args, fn=fn: self._in_thread(fn, args)  # noqa: E731
        self.names.append(name)
        self.functions.append(fn)
        self.schemas.append(schema)
        self._runners[name] = runner
        self._parameters[name] = schema["function"].get("parameters", {})

    def _in_thread(self, fn: Callable[..., Any], args: dict[str, Any]) -> str:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = to_text(fn(**args))
            except BaseException as e:
                box["error"] = e

        thread = threading.Thread(target=target, daemon=True, name=f"gpgrl-tool-{getattr(fn, '__name__', '')}")
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise ToolTimeout(f"ran past its {self.timeout:g} s limit; its call was abandoned (a function passed "
                              "as an object runs in a thread, which cannot be stopped)")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def parse(self, text: str) -> list[ToolCall | ToolResult]:
        """The calls in one policy turn, in order; a malformed one is a ``ToolResult(error="malformed")``."""
        return self.call_format.parse(text)

    def run(self, text: str) -> list[ToolResult] | None:
        """None when the turn calls no tool (it is an answer); else one result per call, errors included."""
        return self.run_many([text])[0]

    def run_many(self, texts: Sequence[str]) -> list[list[ToolResult] | None]:
        """:meth:`run` for the turns of all live episodes, every call at the same time (a thread pool of
        ``max_workers``), so that a call that hangs costs about its ``timeout`` once, not once per call."""
        parsed = [self.parse(text) for text in texts]
        jobs = [(i, j, call) for i, calls in enumerate(parsed) for j, call in enumerate(calls)]
        results: list[list[Any]] = [list(calls) for calls in parsed]
        if jobs:
            with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), self.max_workers)),
                                    thread_name_prefix="gpgrl-tools") as pool:
                for (i, j, _), result in zip(jobs, pool.map(lambda job: self._call(job[2]), jobs)):
                    results[i][j] = result
        return [rs if rs else None for rs in results]

    def _count(self, error: str | None) -> None:
        with self._counts_lock:
            self.counts["calls"] += 1
            if error is not None:
                self.counts[error] += 1

    def _call(self, call: ToolCall | ToolResult) -> ToolResult:
        result = call if isinstance(call, ToolResult) else self._execute(call)
        if len(result.content) > self.max_result_chars:
            result = ToolResult(result.name, self._truncate(result.content), result.error)
        self._count(result.error)
        return result

    def _truncate(self, text: str) -> str:
        marker = f"\n... [{len(text) - self.max_result_chars} characters cut] ...\n"
        keep = self.max_result_chars - len(marker)
        tail = keep // 4
        return text[: keep - tail] + marker + text[len(text) - tail:]

    def _execute(self, call: ToolCall) -> ToolResult:
        name = call.name
        if name not in self._runners:
            near = difflib.get_close_matches(name, self.names, n=1, cutoff=0.5) or [
                n for n in self.names if name and n.startswith(name)][:1]
            return ToolResult(name, f"error: unknown tool {name!r}{f' (did you mean {near[0]!r}?)' if near else ''}"
                                    f"; the tools are: {', '.join(self.names)}", "unknown_tool")
        parameters = self._parameters[name]
        properties = parameters.get("properties", {})
        problems = [f"unknown argument {a!r}" for a in call.arguments if a not in properties]
        problems += [f"missing required argument {a!r}" for a in parameters.get("required", [])
                     if a not in call.arguments]
        problems += [p for a, v in call.arguments.items() if a in properties
                     for p in [_type_error(a, v, properties[a])] if p]
        if problems:
            return ToolResult(name, f"error: bad arguments for {name}: {'; '.join(problems)}; the parameters are "
                                    f"{_signature(name, parameters)}", "bad_arguments")
        try:
            return ToolResult(name, self._runners[name](dict(call.arguments)))
        except ToolTimeout as e:
            return ToolResult(name, f"error: {name} {e}", "timeout")
        except ToolFailed as e:
            return ToolResult(name, str(e), "exception")
        except RemoteError as e:
            return ToolResult(name, f"error: {name} raised {e}", "exception")
        except (Exception, SystemExit) as e:
            return ToolResult(name, f"error: {name} raised {_one_line(e)}", "exception")

    def close(self) -> None:
        """Stop the tools' worker processes (a later call starts fresh ones)."""
        for process in self._processes:
            process.close()

    def __enter__(self) -> Toolbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

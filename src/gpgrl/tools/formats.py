"""How a policy writes tool calls in its turn: one :class:`CallFormat` per model family, in a registry.

``"hermes"`` is the format of Qwen2 / Qwen2.5 / Qwen3, the Hermes models and the tiny test model: each
call is a JSON object between ``<tool_call>`` and ``</tool_call>``, several per turn allowed::

    <tool_call>
    {"name": "calculator", "arguments": {"expression": "1234*5678"}}
    </tool_call>

>>> HERMES.parse('Let me compute.\\n<tool_call>\\n{"name": "calculator", "arguments": {"expression": "2+2"}}\\n'
...              '</tool_call>')
[ToolCall(name='calculator', arguments={'expression': '2+2'})]
>>> HERMES.parse("The answer is 4.")
[]

Add a format for another model family with :func:`register_call_format` (a :class:`CallFormat` subclass
whose ``parse`` returns the calls in order, a ``ToolResult(error="malformed")`` for each one it cannot read).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from gpgrl.tools._types import ToolCall, ToolResult

__all__ = ["CALL_FORMATS", "HERMES", "CallFormat", "HermesFormat", "register_call_format"]


class CallFormat:
    """The way one model family writes tool calls.

    ``parse(text)`` returns the calls of one policy turn in order: a :class:`ToolCall` for each one it can
    read, a ``ToolResult(name="", content=<what is wrong and what to write>, error="malformed")`` for each
    one it cannot. ``stop`` holds stop strings the generation should use (none for formats whose calls end
    with the turn's end-of-sequence token).
    """

    name: str = ""
    stop: tuple[str, ...] = ()

    def parse(self, text: str) -> list[ToolCall | ToolResult]:
        raise NotImplementedError

    def instructions(self, schemas: list[dict[str, Any]]) -> str:
        """How to call ``schemas``' tools in this format, in words: the system prompt's addition for a chat
        template that does not list tools itself (one without ``tools`` in it, such as SmolLM2's)."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} call format has no instructions for "
                                  "templates that do not list tools; use a model whose chat template does")


class HermesFormat(CallFormat):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Qwen2/2.5/3, Hermes).

    ``arguments`` may also be a JSON string that decodes to an object (Qwen models sometimes write it
    so), or absent (a tool without parameters); raw newlines and tabs inside strings (code written without
    escapes) are accepted. A last ``<tool_call>`` left open at the end of the turn is
    read too, since the turn may have ended at the end-of-sequence token before ``</tool_call>``.

    >>> calls = HERMES.parse('<tool_call>{"name": "f", "arguments": "{\\\\"x\\\\": 1}"}</tool_call>'
    ...                      '<tool_call>{"name": "g"}</tool_call>')
    >>> calls
    [ToolCall(name='f', arguments={'x': 1}), ToolCall(name='g', arguments={})]
    >>> HERMES.parse('<tool_call>{"name": "f", "arguments": {"x": 1}</tool_call>')[0].error
    'malformed'
    """

    name = "hermes"
    open_tag, close_tag = "<tool_call>", "</tool_call>"
    example = '{"name": "<tool name>", "arguments": {"<parameter>": <value>}}'

    def instructions(self, schemas: list[dict[str, Any]]) -> str:
        """The tools and the call format, for a template that does not list tools.

        >>> print(HERMES.instructions([{"type": "function", "function": {"name": "f", "description": "F.",
        ...                                                                "parameters": {}}}]))
        You can use these tools, each described by a JSON schema:
        <tools>
        {"type": "function", "function": {"name": "f", "description": "F.", "parameters": {}}}
        </tools>
        To use one, write a call and end your turn; its result comes back in the next message:
        <tool_call>
        {"name": "<tool name>", "arguments": {"<parameter>": <value>}}
        </tool_call>
        When you have the answer, give it without a tool call.
        """
        import json

        listed = "\n".join(json.dumps(s) for s in schemas)
        return (f"You can use these tools, each described by a JSON schema:\n<tools>\n{listed}\n</tools>\n"
                "To use one, write a call and end your turn; its result comes back in the next message:\n"
                f"{self.open_tag}\n{self.example}\n{self.close_tag}\n"
                "When you have the answer, give it without a tool call.")

    def parse(self, text: str) -> list[ToolCall | ToolResult]:
        pattern = re.escape(self.open_tag) + r"(.*?)(?:" + re.escape(self.close_tag) + r"|\Z)"
        return [self._parse_one(body.strip()) for body in re.findall(pattern, text, flags=re.DOTALL)]

    def _malformed(self, what: str) -> ToolResult:
        return ToolResult("", f"error: malformed tool call: {what}; write each call as {self.open_tag}"
                              f"{self.example}{self.close_tag}", "malformed")

    def _parse_one(self, body: str) -> ToolCall | ToolResult:
        try:
            call: Any = json.loads(body, strict=False)  # raw newlines in strings: code
        except ValueError as e:
            return self._malformed(f"the text between {self.open_tag} and {self.close_tag} is not valid "
                                   f"JSON ({e})")
        if not isinstance(call, dict):
            return self._malformed(f"the call is a JSON {type(call).__name__}, not an object")
        name = call.get("name")
        if not isinstance(name, str) or not name:
            return self._malformed('the call has no "name" (a string naming the tool)')
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments, strict=False) if arguments.strip() else {}
            except ValueError:
                return self._malformed(f'the "arguments" of {name!r} are a string that is not a JSON object')
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return self._malformed(f'the "arguments" of {name!r} are a JSON {type(arguments).__name__}, not an '
                                   "object of parameter names and values")
        return ToolCall(name, arguments)


HERMES = HermesFormat()

#: The call formats by name; ``Toolbox(call_format=...)`` picks one.
CALL_FORMATS: dict[str, CallFormat] = {"hermes": HERMES}


def register_call_format(name: str, fmt: CallFormat) -> None:
    """Add (or replace) the call format ``name``.

    >>> class Bracket(CallFormat):
    ...     def parse(self, text):
    ...         return [ToolCall(n, {}) for n in re.findall(r"\\[call (\\w+)\\]", text)]
    >>> register_call_format("bracket", Bracket())
    >>> CALL_FORMATS["bracket"].parse("[call clock]")
    [ToolCall(name='clock', arguments={})]
    >>> del CALL_FORMATS["bracket"]
    """
    if not callable(getattr(fmt, "parse", None)):
        raise TypeError(f"call format {name!r} must have a parse(text) method; subclass gpgrl.tools.CallFormat")
    if not getattr(fmt, "name", ""):
        with contextlib.suppress(AttributeError):
            fmt.name = name
    CALL_FORMATS[name] = fmt

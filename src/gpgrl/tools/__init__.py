"""Tools for multi-turn episodes: plain Python functions the policy calls in its own format.

A tool is a function with type hints and a Google-style docstring (an ``Args:`` section), the convention of
``transformers``' chat templates and TRL: its JSON schema comes from :func:`transformers.utils.get_json_schema`
and goes to ``tokenizer.apply_chat_template(messages, tools=toolbox.functions)``. The policy's calls are
parsed in its model family's format (:data:`CALL_FORMATS`; ``"hermes"``, the ``<tool_call>`` JSON blocks of
Qwen and Hermes models), and each call becomes a tool message: the result, or a one-line error (a malformed
call, an unknown tool, wrong arguments, an exception, a timeout) that the policy sees and
:attr:`Toolbox.counts` counts; a tool never crashes the step, and one that hangs is stopped at its limit.

Built in (:data:`TOOLS`): ``calculator`` (exact arithmetic, no ``eval``) and ``python`` (code in a
separate, limited process: :mod:`gpgrl.tools.sandbox`). Your own: ``"package.module:function"`` or
``"path/to/file.py:function"``.

>>> with Toolbox(["calculator"]) as box:
...     [r.message() for r in box.run('<tool_call>{"name": "calculator", "arguments": {"expression": "2**10"}}'
...                                   '</tool_call>')]
[{'role': 'tool', 'name': 'calculator', 'content': '1024'}]
"""

from gpgrl.tools._types import ERROR_KINDS, ToolCall, ToolFailed, ToolLoadError, ToolResult, ToolTimeout
from gpgrl.tools.calculator import calculator
from gpgrl.tools.formats import CALL_FORMATS, CallFormat, HermesFormat, register_call_format
from gpgrl.tools.registry import TOOLS, get_tool
from gpgrl.tools.sandbox import python, python_tool
from gpgrl.tools.toolbox import Toolbox, tool_schema

__all__ = [
    "CALL_FORMATS",
    "ERROR_KINDS",
    "TOOLS",
    "CallFormat",
    "HermesFormat",
    "ToolCall",
    "ToolFailed",
    "ToolLoadError",
    "ToolResult",
    "ToolTimeout",
    "Toolbox",
    "calculator",
    "get_tool",
    "python",
    "python_tool",
    "register_call_format",
    "tool_schema",
]

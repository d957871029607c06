"""The records a tool call turns into, and the exceptions a tool raises to report a limit or a failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ERROR_KINDS", "ToolCall", "ToolFailed", "ToolLoadError", "ToolResult", "ToolTimeout"]

#: The ways a tool call can fail; each becomes a tool message the policy sees and a counted metric.
ERROR_KINDS = ("malformed", "unknown_tool", "bad_arguments", "exception", "timeout")


@dataclass(frozen=True)
class ToolCall:
    """One call the policy wrote: the tool's name and its (JSON) arguments.

    >>> ToolCall("calculator", {"expression": "1+1"})
    ToolCall(name='calculator', arguments={'expression': '1+1'})
    """

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """What one call came to: the content the policy sees in the tool message, and the error kind if any.

    >>> ToolResult("calculator", "2").message()
    {'role': 'tool', 'name': 'calculator', 'content': '2'}
    """

    name: str
    content: str
    error: str | None = None

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERROR_KINDS:
            raise ValueError(f"ToolResult error {self.error!r} is not one of {', '.join(ERROR_KINDS)}")

    def message(self) -> dict[str, str]:
        """The chat-template tool message: ``{"role": "tool", "name": ..., "content": ...}``."""
        return {"role": "tool", "name": self.name, "content": self.content}


class ToolTimeout(Exception):
    """A tool ran past its wall-clock limit (and was stopped); the message is what the policy sees.

    A tool that enforces its own limit (the ``python`` tool) raises it; the :class:`~gpgrl.tools.Toolbox`
    turns it into an error of kind ``"timeout"``."""


class ToolFailed(Exception):
    """A tool's own report of a failure, shown to the policy verbatim (several lines allowed) and counted as
    an error of kind ``"exception"`` (the ``python`` tool raises it when the code exits with an error)."""


class ToolLoadError(ValueError):
    """A tool cannot be loaded or described (unknown name, import failure, no docstring or type hints): the
    message is one line naming the tool and the fix."""

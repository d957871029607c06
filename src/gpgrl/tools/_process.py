"""Run a user's tool in a killable child process, under a hard wall-clock limit.

A tool given as ``"package.module:function"`` or ``"path/to/file.py:function"`` (or a module-level function
that a fresh interpreter can import) runs in a persistent ``python -m gpgrl.tools._worker`` child talking
JSON lines over its stdin/stdout, like :class:`gpgrl.rewards._deadline.GradingWorker` (and for the same
reasons: no ``multiprocessing`` spawn re-running the user's ``__main__``, no ``fork`` of a process holding
CUDA contexts and threads). Unlike the grading worker, a reply tells a result from an exception, and
concurrent calls each get a worker of their own (idle workers are kept for the next calls), so calls from
several episodes run side by side. A call past its limit kills its worker's whole process group (the tool's
own children included); the next call starts a fresh worker, whose start-up is not counted in the limit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from gpgrl.runtime import pump_lines
from gpgrl.tools._types import ToolFailed, ToolTimeout

__all__ = ["ProcessTool", "RemoteError", "to_text", "worker_main"]

#: Seconds a fresh worker may take to import the tool's module and report ready.
WORKER_STARTUP_S = 120.0
#: Seconds the parent waits beyond a call's limit before it kills the worker.
WORKER_GRACE_S = 0.25


class RemoteError(Exception):
    """The tool raised in its worker process; the message is ``"ExcType: message"`` (one line)."""


def to_text(result: Any) -> str:
    """A tool's return value as the text of a tool message: JSON for dicts and lists, ``str`` otherwise.

    >>> to_text({"a": 1}), to_text([1, "x"]), to_text(3.5), to_text("hi")
    ('{"a": 1}', '[1, "x"]', '3.5', 'hi')
    """
    if isinstance(result, (dict, list, tuple)):
        try:
            return json.dumps(result, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


class _Worker:
    """One child process and the queue its reply lines arrive on."""

    def __init__(self, spec: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpgrl.tools._worker", spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True,  # its own process group: a kill takes the tool's children with it
        )
        self.replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=pump_lines, args=(self.proc.stdout, self.replies), daemon=True).start()
        ready = self._get(WORKER_STARTUP_S)
        if ready is None or json.loads(ready) != "ready":
            error = json.loads(ready).get("error", "") if ready and ready.startswith("{") else ""
            self.kill()
            raise RuntimeError(f"the tool's worker process did not start{': ' + error if error else ''}")

    def _get(self, timeout: float) -> str | None:
        try:
            return self.replies.get(timeout=timeout)
        except queue.Empty:
            return None

    def call(self, arguments: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The reply to one call, or None when no reply came within ``timeout`` (or the worker died)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"arguments": arguments}) + "\n")
        self.proc.stdin.flush()
        reply = self._get(timeout)
        return None if reply is None else json.loads(reply)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class ProcessTool:
    """Calls of one tool (``spec``: ``"module:function"`` or ``"file.py:function"``) in killable workers."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        package_root = str(Path(__file__).resolve().parents[2])
        # The child imports what this process can import: its sys.path, the package first.
        paths = [package_root, *(p for p in sys.path if isinstance(p, str) and p)]
        self._env = dict(os.environ)
        self._env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(os.path.abspath(p) for p in paths))
        atexit.register(self.close)

    def __call__(self, arguments: dict[str, Any], timeout: float) -> str:
        """The tool's result as text; raises :class:`ToolTimeout` past ``timeout`` (the worker is killed),
        :class:`RemoteError` when the tool raised (the message is ``"ExcType: message"``), :class:`ToolFailed`
        when it raised that, RuntimeError when the worker died or could not start."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.alive():
            if worker is not None:
                worker.kill()
            worker = _Worker(self.spec, self._env)
        try:
            reply = worker.call(arguments, timeout + WORKER_GRACE_S)
        except (OSError, ValueError) as e:  # a broken pipe: the worker died between calls
            worker.kill()
            raise RuntimeError(f"the tool's worker process died ({e})") from e
        if reply is None:
            died = not worker.alive()
            code = worker.proc.returncode
            worker.kill()
            if died:
                raise RuntimeError(f"the tool's worker process died (exit code {code})")
            raise ToolTimeout(f"ran past its {timeout:g} s limit and was killed")
        with self._lock:
            if self._closed:
                worker.kill()
            else:
                self._idle.append(worker)
        if "ok" in reply:
            return reply["ok"]
        if reply.get("kind") == "timeout":
            raise ToolTimeout(reply["error"])
        if reply.get("kind") == "failed":
            raise ToolFailed(reply["error"])
        raise RemoteError(reply["error"])

    def close(self) -> None:
        """Stop the idle workers (a call in progress stops its own at its end)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def worker_main(spec: str) -> None:
    """Child-process loop: read JSON requests on stdin, answer each on (the original) stdout."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what the tool prints must not corrupt the replies
    requests = os.fdopen(os.dup(sys.stdin.fileno()), "r")
    with open(os.devnull, "rb") as devnull:  # a tool that reads its stdin must not eat the requests
        os.dup2(devnull.fileno(), sys.stdin.fileno())

    def reply(obj: Any) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    try:
        from gpgrl.tools.registry import load_user_tool

        target = load_user_tool(spec)
    except BaseException as e:
        reply({"error": _one_line(e)})
        return
    reply("ready")
    for line in requests:
        request = json.loads(line)
        try:
            reply({"ok": to_text(target(**request["arguments"]))})
        except ToolTimeout as e:
            reply({"error": str(e), "kind": "timeout"})
        except ToolFailed as e:
            reply({"error": str(e), "kind": "failed"})
        except (Exception, SystemExit) as e:
            reply({"error": _one_line(e), "kind": "exception"})

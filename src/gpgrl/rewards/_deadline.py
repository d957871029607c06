"""Hard wall-clock limits for grading untrusted model output.

Why this module exists: math-verify and sympy can spend unbounded time on a model's answer (``9^{9^{9^9}}``,
``(1+x)^{1000}``), and much of that time is spent in C code (big integers, polynomial arithmetic) that a
Python signal handler cannot interrupt: a ``SIGALRM``-based limit in the training process was measured
at up to six times over, and its alarm could fire into unrelated code after the grading call (inside a
garbage-collection callback). A reward that hangs stalls every process of a run, so the limit must be
hard. Therefore:

* the sympy part of grading runs in a persistent child process (:class:`GradingWorker`): the parent
  waits at most the limit plus a small grace period and then kills the child, whatever it is doing
  (the next call starts a fresh one; that start-up, importing sympy, is not counted against a limit);
* inside the child, :func:`deadline` (a ``setitimer`` signal timer) ends most over-long calls softly,
  so the child usually survives and the next call pays no start-up;
* the training process itself never arms a signal timer, so no alarm can fire outside a grading call.

Grading that needs no sympy (string and number comparisons) stays in the calling process, where it is
fast and bounded (see :func:`gpgrl.rewards.math_grader.grade_answer`); ``benchmarks/grading_speed.py``
measures both paths. :func:`limited_call` is the entry point for other modules (the vision rewards).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpgrl.runtime import pump_lines

__all__ = [
    "GradingTimeout",
    "GradingWorker",
    "deadline",
    "limited_call",
    "worker_main",
]

#: Seconds between re-fires of the alarm once the limit is reached (in case the first was swallowed).
_REFIRE_S = 0.05
#: Extra seconds the parent waits for a worker beyond the per-answer limit before killing it.
_WORKER_GRACE_S = 0.5
#: Seconds a fresh worker may take to import its modules and report ready.
_WORKER_STARTUP_S = 120.0


class GradingTimeout(BaseException):
    """Raised inside a grading call when its time limit is reached.

    It derives from ``BaseException`` on purpose: library code catches ``Exception`` liberally, and the
    limit must still stop the call.
    """


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`GradingTimeout` in the current (main) thread after ``seconds`` of wall time.

    Used inside the grading worker process (a soft limit; the parent's kill is the hard one). Must only be
    used in a POSIX main thread.

    >>> with deadline(1.0):
    ...     x = sum(range(1000))
    >>> x
    499500
    """
    if seconds <= 0:
        raise GradingTimeout
    old_handler = signal.getsignal(signal.SIGALRM)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()

    def _on_alarm(signum: int, frame: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, _REFIRE_S)
        raise GradingTimeout

    signal.signal(signal.SIGALRM, _on_alarm)
    # If an outer timer would fire first, fire ours then; the outer one is re-armed on exit.
    signal.setitimer(signal.ITIMER_REAL, min(seconds, old_delay) if old_delay > 0 else seconds)
    try:
        yield
    finally:
        # The alarm may fire while we are cleaning up; retry until the timer is off and the handler back.
        while True:
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
                if old_delay > 0:
                    remaining = max(old_delay - (time.monotonic() - start), 1e-3)
                    signal.setitimer(signal.ITIMER_REAL, remaining, old_interval)
                break
            except GradingTimeout:
                continue


class GradingWorker:
    """A persistent child process that runs ``target(*args)`` under a hard wall-clock limit.

    ``target_path`` is ``"module:function"``; the function must be importable in a fresh interpreter,
    take JSON-serialisable arguments and return a JSON-serialisable result. :meth:`call` returns the
    result, or ``None`` if the call timed out or raised, or the child died (then the child is killed
    and a fresh one is started on the next call).

    The child is a plain ``python -m gpgrl.rewards._worker`` subprocess talking JSON lines over its
    stdin/stdout, not a ``multiprocessing`` process: the ``spawn`` start method re-runs the user's
    ``__main__`` script in the child (a hazard for training scripts without a main guard), and ``fork``
    is unsafe in a process that holds CUDA contexts or threads.
    """

    def __init__(self, target_path: str) -> None:
        self._target_path = target_path
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        atexit.register(self.close)

    def _start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpgrl.rewards._worker", self._target_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=pump_lines, args=(proc.stdout, replies), daemon=True).start()
        self._proc, self._replies = proc, replies
        try:
            ready = replies.get(timeout=_WORKER_STARTUP_S)
        except queue.Empty:
            ready = None
        if ready != '"ready"':
            self._kill()
            raise RuntimeError(f"grading worker for {self._target_path} did not start")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
        self._proc = None

    def call(self, args: tuple[Any, ...], limit: float) -> Any:
        with self._lock:
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._kill()
                    self._start()
                assert self._proc is not None and self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"args": list(args), "limit": limit}) + "\n")
                self._proc.stdin.flush()
                reply = self._replies.get(timeout=limit + _WORKER_GRACE_S)
                if reply is not None:
                    return json.loads(reply)
            except (OSError, RuntimeError, ValueError, queue.Empty):
                pass
            self._kill()
            return None

    def close(self) -> None:
        with self._lock:
            self._kill()


def worker_main(target_path: str) -> None:
    """Child-process loop: read JSON requests on stdin, answer each on (the original) stdout."""
    # Keep the original stdout for replies only; anything the target prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    module_name, func_name = target_path.split(":")
    target = getattr(importlib.import_module(module_name), func_name)
    replies.write('"ready"\n')
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            with deadline(float(request["limit"])):
                result = target(*request["args"])
        except GradingTimeout:
            result = None
        except Exception:
            result = None
        replies.write(json.dumps(result) + "\n")
        replies.flush()


_WORKERS: dict[str, GradingWorker] = {}
_WORKERS_LOCK = threading.Lock()


def limited_call(target: str, args: tuple[Any, ...], timeout: float, default: Any) -> Any:
    """``target(*args)`` in a killable worker process, within ``timeout`` seconds; ``default`` on timeout,
    error or a dead worker.

    ``target`` is ``"module:function"``, importable in a fresh interpreter, taking JSON-serialisable
    arguments and returning a JSON-serialisable result. One persistent worker per target; calls from
    several threads are serialised on it.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    with _WORKERS_LOCK:
        worker = _WORKERS.setdefault(target, GradingWorker(target))
    result = worker.call(args, timeout)
    return default if result is None else result

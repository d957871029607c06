"""Ctrl-C during training: the first one finishes the step, saves a checkpoint and stops; a second stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class GracefulStop:
    """``requested`` turns True on the first Ctrl-C while :meth:`installed` is active; the trainer checks it
    at each step boundary. A second Ctrl-C raises ``KeyboardInterrupt`` at once (the last checkpoint stays,
    saves being atomic). ``notice`` prints a line (on the main process, above the progress bar)."""

    def __init__(self, notice: Callable[[str], None]):
        self.requested = False
        self._notice = notice

    def _on_ctrl_c(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._notice("[gpgrl] Ctrl-C: finishing the current step, saving a checkpoint and stopping; Ctrl-C again "
                     "stops at once (the last checkpoint is kept)")

    @contextlib.contextmanager
    def installed(self, num_processes: int) -> Iterator[None]:
        """The handler, for the duration of the block. Only for a lone process in the main thread with
        Python's own handler in place: under a launcher (``accelerate launch``) the launcher stops every
        process itself, and a caller's handler is kept."""
        if (num_processes > 1 or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        self.requested = False
        signal.signal(signal.SIGINT, self._on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

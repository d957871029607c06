"""Process-level helpers shared by the command-line entry points (no heavy imports at module level)."""

from __future__ import annotations

import os
import queue
import sys
from typing import Any


def is_main_process() -> bool:
    """True in the process that should print: rank 0 under a launcher (``RANK``), or a lone process.

    Usable before any distributed set-up (a config error must be reported once, not once per process).
    """
    return os.environ.get("RANK", "0") == "0"


def error(command: str, message: str) -> None:
    """Report ``gpgrl COMMAND: error: MESSAGE`` once: on stderr from the main process only.

    Under ``torchrun`` / ``accelerate launch`` the launcher prints its own failure report when the
    processes exit with an error; the main process also writes the message into the launcher's error
    file (``TORCHELASTIC_ERROR_FILE``), so that the report's "Root Cause" shows it instead of a link.
    """
    if not is_main_process():
        return
    text = f"gpgrl {command}: error: {message}"
    print(text, file=sys.stderr, flush=True)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        import json
        import time

        try:
            with open(error_file, "w") as f:
                json.dump({"message": text, "timestamp": int(time.time())}, f)
        except OSError:
            pass  # the report then shows its generic line; the message is on stderr already


def close_process_group() -> None:
    """Tear down torch.distributed before exit: a live gloo/NCCL group at interpreter shutdown can abort."""
    if "torch" not in sys.modules:  # nothing distributed was ever started
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def pump_lines(stream: Any, replies: queue.Queue[str | None]) -> None:
    """Reader thread of a worker process's pipe: forward its lines (stripped) to ``replies``; None when the pipe
    closes (the worker ended or was killed), so that the waiting side never blocks on a dead worker."""
    try:
        for line in stream:
            replies.put(line.strip())
    except (OSError, ValueError):
        pass
    replies.put(None)

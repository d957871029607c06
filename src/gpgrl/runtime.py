"""Process-level helpers shared by the command-line entry points (no heavy imports at module level)."""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    """True in the process that should print: rank 0 under a launcher (``RANK``), or a lone process.

    Usable before any distributed set-up (a config error must be reported once, not once per process).
    """
    return os.environ.get("RANK", "0") == "0"


def error(command: str, message: str) -> None:
    """Print ``gpgrl COMMAND: error: MESSAGE`` to stderr, from the main process only."""
    if is_main_process():
        print(f"gpgrl {command}: error: {message}", file=sys.stderr, flush=True)


def close_process_group() -> None:
    """Tear down torch.distributed before exit: a live gloo/NCCL group at interpreter shutdown can abort."""
    if "torch" not in sys.modules:  # nothing distributed was ever started
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

"""The stand-in's call log and weights fingerprint (no ``vllm`` imports: tests load this file by path).

Every call the stand-in receives is appended as one JSON line to the file named by ``$VLLM_STANDIN_LOG``
(nothing is written when it is unset), with the process id and ``$RANK``, so a test that drives
``gpgrl train`` in a subprocess reads back the exact order of ``LLM``, ``generate``, ``sleep``,
``wake_up``, ``apply_model`` / ``load_weights`` and the cache resets.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import torch

LOG_ENV = "VLLM_STANDIN_LOG"


def weights_hash(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A fingerprint of named tensors: SHA-256 over the sorted names and each tensor's float32 bytes.

    The same weights give the same fingerprint whatever their order, dtype or device; tests hash a
    checkpoint's model loaded with transformers the same way.

    >>> a = [("w", torch.ones(2)), ("b", torch.zeros(1))]
    >>> weights_hash(a) == weights_hash(reversed(a)), weights_hash(a) == weights_hash([("w", torch.ones(2))])
    (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(((n, t) for n, t in named), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it (tensors and other objects as their repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)


def log(call: str, **fields: Any) -> None:
    """Append ``{"call": call, "pid", "rank", **fields}`` to ``$VLLM_STANDIN_LOG`` (one line, one write)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = json.dumps({"call": call, "pid": os.getpid(), "rank": os.environ.get("RANK"), **jsonable(fields)})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The calls a log holds, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

"""The lines a command prints while it loads a model (tens of seconds on a CPU, minutes for a large one).

``gpgrl train`` (:func:`gpgrl.train.build.build_parts`) and ``gpgrl eval`` both say when the load starts and
how long it took::

    gpgrl eval: loading smollm2 ...
    gpgrl eval: loaded smollm2 in 18.7 s (135M parameters, cpu)
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["model_loading"]


def _millions(n: int) -> str:
    """``135M``, ``7.6B``, ``0.1M``.

    >>> _millions(134_515_008), _millions(7_615_616_512), _millions(96_000)
    ('135M', '7.6B', '0.1M')
    """
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e6:.1f}M"


@contextlib.contextmanager
def model_loading(prefix: str, name: str, *, enabled: bool = True,
                  stream: TextIO | None = None) -> Iterator[dict[str, Any]]:
    """``PREFIX: loading NAME ...`` as the block starts and ``PREFIX: loaded NAME in 18.7 s (135M parameters,
    cpu)`` when it ends, the model being what the block stores under ``"model"`` in the dict it is given
    (loading takes tens of seconds on a CPU, minutes for a large model; an error in the block prints no
    second line). Both go to the stream stderr is when the block starts (a quiet GGUF load holds stderr
    back meanwhile). Nothing when not ``enabled``.
    """
    loaded: dict[str, Any] = {}
    out = stream if stream is not None else sys.stderr
    if enabled:
        print(f"{prefix}: loading {name} ...", file=out, flush=True)
    start = time.monotonic()
    yield loaded
    if not enabled:
        return
    model, about = loaded.get("model"), ""
    if model is not None:
        params = list(model.parameters())
        about = f" ({_millions(sum(p.numel() for p in params))} parameters, {params[0].device})" if params else ""
    print(f"{prefix}: loaded {name} in {time.monotonic() - start:.1f} s{about}", file=out, flush=True)

"""Where the benchmark data is: one rule for every command and test.

The benchmark data folder holds ``math/`` (the text benchmarks, e.g. ``math/math500/test.jsonl``) and
``vision/`` (e.g. ``vision/geoqa/geoqa_test_prompts.jsonl``). :func:`data_dir` finds it:

1. the folder passed explicitly (``gpgrl eval --data-dir DIR``, ``train.eval_data_dir``), if any;
2. else ``$GPGRL_DATA``;
3. else ``../shared/data`` next to a source checkout (the folder beside the repository that holds
   ``pyproject.toml``), if it exists;
4. else none: the benchmarks are read from the Hugging Face Hub.

``gpgrl eval``, the trainer's ``train.eval_every`` evaluations, ``gpgrl data prepare`` and the test suite
(``tests/conftest.py``'s ``SHARED_DATA``) all use it. A folder given explicitly may also be the ``math/``
or ``vision/`` folder itself: :meth:`DataDir.find` looks in both places.

Data with no local copy comes from the Hugging Face Hub; :func:`hub_unreachable` says at once (within
:data:`HUB_TIMEOUT` seconds) when it cannot, so that the message naming ``--data-dir`` and ``GPGRL_DATA``
comes before the download libraries' retries. This module imports nothing heavy (the test suite's conftest
imports it).

>>> [str(p) for p in DataDir(Path("/data"), "GPGRL_DATA").candidates("vision", "geoqa/test.jsonl")]
['/data/geoqa/test.jsonl', '/data/vision/geoqa/test.jsonl']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATA_SUBFOLDERS", "ENV", "HUB_TIMEOUT", "DataDir", "checkout_data_dir", "data_dir", "find_data_dir", "hub_unreachable"]

#: The environment variable naming the benchmark data folder (the one holding math/ and vision/).
ENV = "GPGRL_DATA"
#: The data folder's subfolders, with what they hold.
DATA_SUBFOLDERS = {"math": "math benchmarks (math500, aime24, ...)", "vision": "vision benchmarks and their images"}


@dataclass(frozen=True)
class DataDir:
    """A benchmark data folder and what named it (``--data-dir``, ``GPGRL_DATA``, or the checkout's
    ``../shared/data``), for messages that say where a file was looked for."""

    path: Path
    origin: str

    def candidates(self, kind: str, relative: str) -> list[Path]:
        """Where ``relative`` (``math500/test.jsonl``) of a ``kind`` (``math`` or ``vision``) benchmark may
        be: directly under the folder (it is the ``math/`` folder itself), or under its ``kind/`` folder."""
        return [self.path / relative, self.path / kind / relative]

    def find(self, kind: str, relative: str) -> Path | None:
        """The first existing file of :meth:`candidates`; a ``*`` pattern takes its first match."""
        for place in self.candidates(kind, relative):
            found = sorted(place.parent.glob(place.name)) if "*" in place.name else [place]
            found = [f for f in found if f.is_file()]
            if found:
                return found[0]
        return None

    def describe(self) -> str:
        """``/data (GPGRL_DATA)``."""
        return f"{self.path} ({self.origin})"


def checkout_data_dir() -> Path | None:
    """``../shared/data`` beside the source checkout this package runs from, if both exist (an installed
    package has no checkout: None)."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "pyproject.toml").is_file() or not (repo / "src" / "gpgrl").is_dir():
        return None
    shared = repo.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def find_data_dir(given: str | Path | None = None) -> DataDir | None:
    """The benchmark data folder, with its origin: ``given``, else ``$GPGRL_DATA`` (returned whether or not
    it exists, so that a caller can say it is missing), else the checkout's ``../shared/data``, else None."""
    if given is not None and str(given).strip():
        return DataDir(Path(given).expanduser(), "--data-dir")
    env = os.environ.get(ENV, "").strip()
    if env:
        return DataDir(Path(env).expanduser(), ENV)
    shared = checkout_data_dir()
    return DataDir(shared, "../shared/data next to the source checkout") if shared is not None else None


def data_dir(given: str | Path | None = None) -> Path | None:
    """The benchmark data folder (holding math/ and vision/): ``given``, else ``$GPGRL_DATA``, else
    ``../shared/data`` next to a source checkout if it exists, else None (the Hugging Face Hub)."""
    found = find_data_dir(given)
    return found.path if found is not None else None


#: Seconds a connection to the Hugging Face Hub may take to open before data with no local copy fails (the
#: datasets and huggingface_hub libraries would otherwise retry for ~25 s before saying the same).
HUB_TIMEOUT = 5.0
_hub_checked: dict[str, str | None] = {}


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_unreachable(timeout: float = HUB_TIMEOUT) -> str | None:
    """Why the Hugging Face Hub (``$HF_ENDPOINT``) cannot be reached, or None; checked once per process.

    None too in offline mode (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``): the Hugging Face libraries
    then answer at once, from their cache or with an error, and never retry."""
    from urllib.parse import urlparse

    if _offline():
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    key = f"{host}:{port}"
    if key not in _hub_checked:
        from gpgrl.models.loading import _unreachable

        problem = _unreachable(host, port, timeout)
        _hub_checked[key] = f"{host} cannot be reached: {problem}" if problem else None
    return _hub_checked[key]

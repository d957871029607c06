"""Where gpgrl looks for things outside the package: the source checkout it runs from, the benchmark data.

The benchmark data folder holds ``math/`` and ``vision/`` (the layout of the repository's ``shared/data``):
``$GPGRL_DATA`` when set, else ``../shared/data`` next to the source checkout (as ``tests/conftest.py``
resolves it). An installed package (no checkout) has no default: set ``GPGRL_DATA``.

>>> import os
>>> before = os.environ.get("GPGRL_DATA"); os.environ["GPGRL_DATA"] = "~/bench"
>>> data_dir() == Path.home() / "bench"
True
>>> _ = os.environ.pop("GPGRL_DATA") if before is None else os.environ.update(GPGRL_DATA=before)
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable naming the benchmark data folder.
DATA_ENV = "GPGRL_DATA"
#: The benchmark data folder's subfolders, by what they hold.
DATA_SUBFOLDERS = {"math": "math benchmarks (math500, aime24, ...)", "vision": "vision benchmarks and their images"}


def source_checkout() -> Path | None:
    """The repository this package runs from (``<repo>/src/gpgrl``), or None for an installed package."""
    package = Path(__file__).resolve().parent
    repo = package.parents[1]
    return repo if package.parent.name == "src" and (repo / "pyproject.toml").is_file() else None


def data_dir() -> Path | None:
    """The benchmark data folder: ``$GPGRL_DATA``, else ``../shared/data`` next to the source checkout; None
    when neither applies (an installed package with ``GPGRL_DATA`` unset). The folder may not exist."""
    given = os.environ.get(DATA_ENV)
    if given:
        return Path(given).expanduser()
    repo = source_checkout()
    return None if repo is None else repo.parent / "shared" / "data"

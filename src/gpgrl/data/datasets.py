"""Reading prompt datasets: one reader for training and evaluation.

A dataset is a Hugging Face id, a local file (``.jsonl``, ``.json``, ``.parquet``, ``.csv``) or folder,
or a built-in task (``builtin:NAME``). Every record becomes a plain dict; the question and gold answer
are read from configurable columns (dotted paths reach into nested fields, as verl's
``reward_model.ground_truth``).

Built-in datasets are found through a registry of ``"module:factory"`` paths (:data:`BUILTIN_DATASETS`,
:func:`register_builtin`), imported only when used (the shapes task needs Pillow). The generated tasks
live beside this module (:mod:`gpgrl.data.arithmetic`, :mod:`gpgrl.data.shapes`): the data layer never
names a layer above it, by import or by string (tests/test_structure.py checks both). A factory takes keyword arguments (a recipe's ``data.dataset_kwargs``) and returns an object with a
``records(split) -> list[dict]`` method.

Errors name the file, the line and the problem: an empty file, a line that is not JSON or not an
object, a missing column (with the columns there are).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}

#: ``builtin:NAME`` -> ``"module:factory"``; the factory's keyword arguments are ``data.dataset_kwargs``.
BUILTIN_DATASETS: dict[str, str] = {"arithmetic": "gpgrl.data.arithmetic:ArithmeticTask",
                                    "multiplication": "gpgrl.data.multiplication:MultiplicationTask",
                                    "shapes": "gpgrl.data.shapes:ShapesTask"}


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file or id, the place and the fix."""


def register_builtin(name: str, factory_path: str) -> None:
    """Make ``builtin:NAME`` load ``factory_path`` (``"package.module:callable"``)."""
    if ":" not in factory_path:
        raise ValueError(f"register_builtin({name!r}): give the factory as 'package.module:callable'")
    BUILTIN_DATASETS[name] = factory_path


def get_field(record: dict[str, Any], path: str) -> Any:
    """``record[a][b]`` for ``path="a.b"``, an integer part indexing a list; KeyError if missing.

    >>> get_field({"reward_model": {"ground_truth": "42"}}, "reward_model.ground_truth")
    '42'
    >>> get_field({"prompt": [{"role": "user", "content": "1+1?"}]}, "prompt.0.content")   # verl-style parquet
    '1+1?'
    """
    value: Any = record
    for part in path.split("."):
        if isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def builtin_task(name: str, **kwargs: Any) -> Any:
    """The object behind ``builtin:NAME`` (e.g. :class:`gpgrl.data.arithmetic.ArithmeticTask`)."""
    if name not in BUILTIN_DATASETS:
        raise DatasetError(f"unknown built-in dataset 'builtin:{name}'; valid: "
                           f"{', '.join('builtin:' + n for n in BUILTIN_DATASETS)}")
    module, _, attr = BUILTIN_DATASETS[name].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise DatasetError(f"builtin:{name} does not take these settings (data.dataset_kwargs): {e}") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; blank lines are skipped.

    Raises :class:`DatasetError` naming the file and line for a line that is not JSON or not an object,
    and for a file with no records.
    """
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); every "
                                   "line of a .jsonl file must be one JSON object") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: a JSON {type(row).__name__}, not an object; every line "
                                   "of a .jsonl file must be one JSON object like {\"question\": ..., \"answer\": ...}")
            rows.append(row)
    if not rows:
        raise DatasetError(f"{path} has no records (the file is empty); point data.dataset at a file with one "
                           "JSON object per line")
    return rows


def _read_local_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix not in LOCAL_FORMATS:
        raise DatasetError(f"cannot read {str(path)!r}: unknown file type {suffix!r}; use one of "
                           f"{', '.join(LOCAL_FORMATS)}")
    if suffix == ".jsonl":
        return read_jsonl(path)
    if path.stat().st_size == 0:
        raise DatasetError(f"{path} is empty; point data.dataset at a file with records")
    import datasets

    try:
        ds = datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split="train")
    except Exception as e:  # pyarrow / json errors: name the file and the reason
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"could not read {path} as {suffix[1:]}: {reason}") from e
    rows = [dict(r) for r in _undecoded_images(ds)]
    if not rows:
        raise DatasetError(f"{path} has no records")
    return rows


def load_records(dataset: str, *, split: str = "train", subset: str | None = None,
                 **kwargs: Any) -> list[dict[str, Any]]:
    """Records of ``dataset`` as dicts: ``builtin:NAME``, a local file or folder, or a Hugging Face id.

    ``kwargs`` go to the built-in task's factory, or to ``datasets.load_dataset`` for a Hub id or folder.
    """
    if dataset.startswith("builtin:"):
        return builtin_task(dataset.removeprefix("builtin:"), **kwargs).records(split)
    path = Path(dataset).expanduser()
    if path.is_file():
        return _read_local_file(path)
    if dataset.startswith(("/", "./", "../", "~")) or Path(dataset).suffix.lower() in LOCAL_FORMATS:
        raise FileNotFoundError(f"dataset file {dataset!r} does not exist; check the path (data.dataset)")
    import datasets

    try:
        ds = datasets.load_dataset(str(path) if path.is_dir() else dataset, subset, split=split, **kwargs)
    except Exception as e:  # the datasets library raises many types for "cannot reach / no such split"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "the local folder" if path.is_dir() else "the Hugging Face Hub"
        raise DatasetError(
            f"could not load dataset {dataset!r} (split={split!r}, subset={subset!r}) from {where}: {reason}. "
            "Pass a local .jsonl/.parquet file, a folder, or a reachable Hugging Face dataset id "
            "(offline: HF_DATASETS_OFFLINE=1 with the dataset in the cache)."
        ) from e
    return [dict(r) for r in _undecoded_images(ds)]


def _undecoded_images(ds: Any) -> Any:
    """The dataset with its image columns left undecoded (``{"path", "bytes"}``): images are opened only
    when a prompt is built (:mod:`gpgrl.data.images`), never all at once."""
    from datasets import Image, Sequence

    for name, feature in ds.features.items():
        if isinstance(feature, Image) and feature.decode:
            ds = ds.cast_column(name, Image(decode=False))
        elif isinstance(feature, (list, Sequence)):
            inner = feature[0] if isinstance(feature, list) else feature.feature
            if isinstance(inner, Image) and inner.decode:
                ds = ds.cast_column(name, [Image(decode=False)] if isinstance(feature, list) else Sequence(Image(decode=False)))
    return ds


def check_columns(records: list[dict[str, Any]], columns: dict[str, str], dataset: str) -> None:
    """Raise a clear error if the dataset is empty or a configured column is missing."""
    if not records:
        raise DatasetError(f"dataset {dataset!r} has no records; check data.dataset, data.split and data.max_samples")
    first = records[0]
    for option, column in columns.items():
        try:
            get_field(first, column)
        except KeyError:
            raise DatasetError(
                f"dataset {dataset!r} has no column {column!r} (set by {option}); its columns are: "
                f"{', '.join(sorted(first))}. Set {option} to one of them."
            ) from None

"""Images of a dataset record, read lazily: a dataset of 100k images is never decoded into memory up front.

A record's image column (``data.image_column``) holds one image or a list of them, each as

* a path, relative to ``data.image_dir`` (or absolute),
* a ``PIL.Image.Image``,
* a dict ``{"path": ..., "bytes": ...}`` (Hugging Face ``datasets``' undecoded ``Image`` feature, which
  :func:`gpgrl.data.datasets.load_records` keeps undecoded).

:func:`load_images` opens them when a prompt is built (once per prompt per draw, shared by its G
answers) and converts them to RGB. A missing file is an error naming the record's column and the path.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def image_refs(record: dict[str, Any], column: str) -> list[Any]:
    """The record's image references, as a list (one image or several)."""
    from gpgrl.data.datasets import get_field

    try:
        value = get_field(record, column)
    except KeyError:
        raise ValueError(f"a record has no image column {column!r} (data.image_column); its columns are: "
                         f"{', '.join(sorted(record))}") from None
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_image(ref: Any, image_dir: str | Path | None = None):
    """One image reference (path, PIL image or ``{"path", "bytes"}`` dict) as an RGB ``PIL.Image``."""
    from PIL import Image

    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return Image.open(io.BytesIO(ref["bytes"])).convert("RGB")
        ref = ref.get("path")
    if not isinstance(ref, (str, Path)) or not str(ref):
        raise ValueError(f"cannot read an image from {ref!r}: give a file path, a PIL image or {{'path', 'bytes'}}")
    path = Path(ref).expanduser()
    if not path.is_absolute() and image_dir is not None:
        path = Path(image_dir).expanduser() / path
    if not path.is_file():
        where = f" (data.image_dir={str(image_dir)!r})" if image_dir is not None else " (set data.image_dir?)"
        raise FileNotFoundError(f"no such image file: {str(path)!r}{where}")
    with Image.open(path) as img:
        return img.convert("RGB")


def load_images(record: dict[str, Any], column: str, image_dir: str | Path | None = None) -> list[Any]:
    """Every image of ``record`` (see the module docstring), opened now."""
    return [load_image(ref, image_dir) for ref in image_refs(record, column)]

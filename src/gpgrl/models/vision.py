"""Vision-language policies: loading image-text-to-text models with their processor, and the extra inputs
their forward pass needs.

Any transformers image-text-to-text model that has a processor loads here (Qwen2-VL and Qwen2.5-VL are
the paper's). Their images reach the model as *per-image* tensors (``pixel_values`` [patches, D],
``image_grid_thw`` [images, 3]) that a batch concatenates along dimension 0, and Qwen's multimodal
rotary positions (3-D, computed by the model itself from the token ids, the image grids and the
attention mask) also need ``mm_token_type_ids`` [B, L]: 1 on image tokens, 2 on video tokens, 0 elsewhere.
:func:`token_type_inputs` derives it from the token ids, so it is right for any padding and for the
completion tokens appended after sampling (the text path's ``position_ids_from_mask`` would be wrong
for these models: their positions are the model's own).

The vision path needs torchvision (Qwen2-VL's image processor): ``pip install 'gpgrl[vision]'``; on a
CPU-only machine install the matching pair first, ``pip install torch==2.14.1 torchvision==0.29.1``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from gpgrl.models.loading import DTYPES, gguf_path

VISION_INSTALL = ("the vision path needs torchvision and Pillow: pip install 'gpgrl[vision]' (on a CPU-only "
                  "machine first: pip install torch==2.14.1 torchvision==0.29.1, a matching pair)")


def require_vision() -> None:
    """ImportError with the install line when the vision extra is missing."""
    try:
        import PIL  # noqa: F401
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError) as e:  # a torchvision built for another torch fails with RuntimeError
        raise ImportError(f"{VISION_INSTALL} ({type(e).__name__}: {e})") from None


def is_vision_config(config: Any) -> bool:
    """Whether a transformers config describes an image-text-to-text model (it has a vision tower)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return getattr(config, "model_type", None) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES or \
        getattr(config, "vision_config", None) is not None


def is_vision_model(model: Any, *, trust_remote_code: bool = False) -> bool:
    """Whether ``model`` is an image-text-to-text model: the one test every part uses (``gpgrl eval``, the
    run builder, the evaluator, the trainer).

    ``model`` may be a model (possibly wrapped by peft), its config, its processor or tokenizer (a
    processor with an image processor: True), or a name or path (its ``config.json`` is read; a GGUF file,
    a text-only format, is not; a config that cannot be read counts as text-only, and the model loader
    then reports the problem with its own message).

    >>> from transformers import Qwen2Config
    >>> is_vision_model(Qwen2Config()), is_vision_model(None)
    (False, False)
    """
    if isinstance(model, (str, Path)):
        return _is_vision_name(str(model), trust_remote_code)
    if hasattr(model, "image_processor"):  # a processor
        return True
    config = model if hasattr(model, "model_type") and not hasattr(model, "config") else getattr(model, "config", None)
    return is_vision_config(config)


def _is_vision_name(name: str, trust_remote_code: bool) -> bool:
    if gguf_path(name) is not None:
        return False
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return False
    return is_vision_config(config)


def load_processor(name_or_path: str, *, trust_remote_code: bool = False, min_pixels: int | None = None,
                   max_pixels: int | None = None):
    """The model's processor (tokenizer + image processor), set up for batched generation (left padding).

    ``min_pixels`` / ``max_pixels`` bound the image sizes Qwen2-VL's processor resizes to (fewer pixels,
    fewer image tokens); None keeps the processor's own.
    """
    require_vision()
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise OSError(f"could not load a processor from {name_or_path!r}: {e}") from e
    image_processor = getattr(processor, "image_processor", None)
    if (min_pixels or max_pixels) and image_processor is not None:
        size = image_processor.size  # Qwen2-VL: shortest_edge = min pixels, longest_edge = max pixels
        image_processor.size = {"shortest_edge": min_pixels or size["shortest_edge"],
                                "longest_edge": max_pixels or size["longest_edge"]}
    tok = processor.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return processor


def load_vision_policy(name_or_path: str, *, dtype: Any = "auto", trust_remote_code: bool = False,
                       attn_implementation: str | None = None) -> torch.nn.Module:
    """An image-text-to-text model to train (``AutoModelForImageTextToText``)."""
    require_vision()
    from transformers import AutoModelForImageTextToText

    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not valid; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
    except OSError as e:
        raise OSError(f"could not load an image-text-to-text model from {name_or_path!r}: {e}") from e


def _forward_params(model: torch.nn.Module) -> set[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def token_type_inputs(model: torch.nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"mm_token_type_ids": [B, L]}`` for models whose forward takes it (Qwen2-VL family), else ``{}``.

    1 where ``input_ids`` is the config's image token, 2 where it is its video token, 0 elsewhere (text,
    padding and completion tokens).
    """
    config = getattr(model, "config", None)
    if config is None or "mm_token_type_ids" not in _forward_params(model):
        return {}
    types = torch.zeros_like(input_ids)
    for token, kind in (("image_token_id", 1), ("video_token_id", 2)):
        token_id = getattr(config, token, None)
        if token_id is not None:
            types = torch.where(input_ids == token_id, torch.full_like(types, kind), types)
    return {"mm_token_type_ids": types}


def placeholder_token_ids(model: torch.nn.Module) -> list[int]:
    """The vision placeholder tokens a model must never *generate* (image/video pads, vision start/end).

    An answer holding an image token would no longer match its image features in the update's forward
    pass ("image features and image tokens do not match"), so generation suppresses them.
    """
    config = getattr(model, "config", None)
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({int(t) for t in (getattr(config, n, None) for n in names) if t is not None})


"""One loader for a policy and its tokenizer (a text model) or processor (a vision-language model), shared by
``gpgrl train`` (:func:`gpgrl.train.build.build_parts`) and ``gpgrl eval``. Whether a model is a vision one
is decided by :func:`gpgrl.models.vision.is_vision_model`, the one test every part uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel

from gpgrl.models.loading import check_model_path, load_policy, load_tokenizer, loading_bars
from gpgrl.models.vision import is_vision_model, load_processor, load_vision_policy


@dataclass(frozen=True)
class ModelSource:
    """A policy to load by name, text or vision, with its tokenizer (text) or processor (vision): the one
    loader ``gpgrl train`` (:func:`gpgrl.train.build.build_parts`) and ``gpgrl eval`` share.

    ``vision``: load an image-text-to-text model and its processor (see
    :func:`gpgrl.models.vision.is_vision_model`, which :meth:`detect` asks); ``tokenizer``: load the
    tokenizer/processor from another name; ``min_pixels`` / ``max_pixels``: the processor's image sizes;
    ``quiet``: no loading bars (:func:`loading_bars`).
    """

    name: str
    vision: bool = False
    tokenizer: str | None = None
    dtype: Any = "auto"
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    quiet: bool = False

    @classmethod
    def detect(cls, name: str, **fields: Any) -> ModelSource:
        """A source whose ``vision`` is read from the model's config (``check_model_path`` and
        ``check_hub_reachable`` first: reading the config of an id the Hub cannot serve retries for 23 s)."""
        from gpgrl.models.loading import check_hub_reachable

        check_model_path(name)
        check_hub_reachable(name)
        return cls(name, vision=is_vision_model(name, trust_remote_code=fields.get("trust_remote_code", False)),
                   **fields)

    def load_processor(self) -> Any:
        """The tokenizer (text) or processor (vision), set up for batched generation (left padding)."""
        name = self.tokenizer or self.name
        if self.vision:
            return load_processor(name, trust_remote_code=self.trust_remote_code, min_pixels=self.min_pixels,
                                  max_pixels=self.max_pixels)
        return load_tokenizer(name, trust_remote_code=self.trust_remote_code)

    def load_model(self) -> PreTrainedModel:
        """The policy (a causal LM, or an image-text-to-text model), its loading bars as :func:`loading_bars`."""
        kwargs = dict(dtype=self.dtype, trust_remote_code=self.trust_remote_code,
                      attn_implementation=self.attn_implementation)
        with loading_bars(self.name, quiet=self.quiet):
            if self.vision:
                return load_vision_policy(self.name, **kwargs)
            return load_policy(self.name, **kwargs)


def load_model_and_processor(name: str, **fields: Any) -> tuple[PreTrainedModel, Any]:
    """``(model, tokenizer or processor)`` of ``name``, a text or vision model as its config says
    (fields: those of :class:`ModelSource`)."""
    source = ModelSource.detect(name, **fields)
    return source.load_model(), source.load_processor()

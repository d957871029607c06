"""Loading policies and tokenizers by Hugging Face id or local path, with errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a local path rather than a Hugging Face id ("org/name").

    A local path: it exists; it starts with ``/``, ``.`` or ``~``; it has more than one ``/`` (a Hub id has
    exactly one); or its first part is a folder in the working directory (``runs/model`` next to a
    ``runs/`` folder). Then a missing path is a typo to report at once, not an id to look up online.

    >>> looks_local("Qwen/Qwen2.5-Math-7B"), looks_local("./sft"), looks_local("runs/x/checkpoints/step-10/model")
    (False, True, True)
    """
    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or path.exists():
        return True
    first = Path(name.split("/")[0])
    return "/" in name and first.is_dir()


def check_model_path(name: str, what: str = "model") -> None:
    """FileNotFoundError, with the fix, when ``name`` looks like a local path that does not exist."""
    if looks_local(name) and not Path(name).expanduser().exists():
        raise FileNotFoundError(
            f"no such {what} folder: {name!r}. Pass an existing folder saved with save_pretrained (e.g. "
            "OUTPUT/checkpoints/step-000100/model), or a Hugging Face model id such as 'Qwen/Qwen2.5-Math-7B'."
        )


def check_hub_reachable(name: str, what: str = "model", timeout: float = 5.0) -> None:
    """For a Hub id that is not in the local cache, fail at once (OSError) when the Hub cannot be reached,
    instead of after the download library's retries. Local paths and cached ids pass untouched."""
    import os
    import socket
    from urllib.parse import urlparse

    if looks_local(name):
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str) or \
                isinstance(try_to_load_from_cache(name, "tokenizer_config.json"), str):
            return  # cached: transformers can load it offline
    except Exception:  # an id that is not a valid repo id: let transformers give its own error
        return
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise OSError(f"{what} {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; download it "
                      "first, or pass a local folder")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout=timeout).close()
    except OSError as e:
        raise OSError(
            f"{what} {name!r} is not in the local Hugging Face cache and the Hub ({endpoint.hostname}) cannot be "
            f"reached ({e}). Connect to the internet, or pass a local folder saved with save_pretrained."
        ) from None


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """A tokenizer set up for batched generation: left padding, a pad token (EOS if it has none)."""
    check_model_path(name_or_path, "tokenizer")
    check_hub_reachable(name_or_path, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise OSError(
            f"could not load a tokenizer from {name_or_path!r}: {e}\n"
            "Check the id or path; offline, set HF_HUB_OFFLINE=1 and use a model already in the HF cache."
        ) from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_policy(
    name_or_path: str,
    *,
    dtype: str = "auto",
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A causal LM to train. ``dtype``: auto, float32, bfloat16 or float16."""
    check_model_path(name_or_path, "model")
    check_hub_reachable(name_or_path, "model")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not valid; choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, object] = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as e:
        raise OSError(
            f"could not load a model from {name_or_path!r}: {e}\n"
            "Check the id or path; offline, set HF_HUB_OFFLINE=1 and use a model already in the HF cache."
        ) from e
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute activations in backward (transformers 5 name, with the 4.x name as fallback)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False  # generate() still uses its KV cache: the engine passes use_cache=True


def apply_lora(model: PreTrainedModel, r: int, alpha: int, dropout: float, target_modules: list[str] | str):
    """Wrap ``model`` with a peft LoRA adapter (``pip install gpgrl[peft]``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install 'gpgrl[peft]'") from e
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)

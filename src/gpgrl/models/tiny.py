"""Tiny models and an offline tokenizer, for tests and the CPU quickstart (no download).

The tokenizer is character-level (built with the ``tokenizers`` library) plus special tokens for the
chat roles and the ``<think>``/``<answer>`` tags, and carries a chat template, so the same prompt
formatting code path runs as for a real instruct model. The model is a real transformers causal LM
(OLMo-2 architecture: a Llama-style decoder) with random weights, built from a config. Why OLMo-2 and
not Qwen2: transformers 5 maps ``model_type: qwen2`` to the byte-level Qwen2 tokenizer class on
``AutoTokenizer.from_pretrained``, which would silently replace this character-level tokenizer's
pre-tokenizer; ``olmo2`` maps to the generic tokenizers backend, so a saved tiny checkpoint
round-trips through plain transformers unchanged.

>>> tok = build_char_tokenizer()
>>> ids = tok("12+7=")["input_ids"]
>>> tok.decode(ids)
'12+7='
>>> len(tok("<answer>19</answer>")["input_ids"])    # tags are single tokens
4
"""

from __future__ import annotations

import string
from pathlib import Path

from transformers import AutoModelForCausalLM, Olmo2Config, PreTrainedModel, PreTrainedTokenizerBase

SPECIAL_TOKENS = ["<pad>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"

# A minimal chat template in the shape of real instruct models': role markers, an end marker per turn,
# and the assistant marker appended when add_generation_prompt=True. With tools (apply_chat_template(...,
# tools=[...])) a system turn lists them as name(parameters) before the conversation (short: a character-level
# model reads every character), and a tool's result is a user turn inside <tool_response> tags, as Qwen2.5's
# template lays them out; the model calls a tool as Qwen / Hermes do: <tool_call>{"name": .., "arguments": ..}
# </tool_call>.
CHAT_TEMPLATE = (
    "{% if tools %}{{ '<|system|>tools:' }}{% for t in tools %}"
    "{% set f = t['function'] if t['function'] is defined else t %}"
    "{{ ' ' + f['name'] + '(' + (f['parameters']['properties'] | list | join(',')) + ')' }}"
    "{% endfor %}{{ '<|end|>' }}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}{{ '<|user|><tool_response>' + m['content'] + '</tool_response><|end|>' }}"
    "{% else %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_char_tokenizer(save_dir: str | Path | None = None) -> PreTrainedTokenizerBase:
    """A character-level fast tokenizer with chat template; saved to ``save_dir`` if given."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS + TAG_TOKENS + list(CHARS) + ["<unk>"]:
        vocab.setdefault(tok, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL_TOKENS)
    core.add_tokens(TAG_TOKENS)  # matched whole before the char split, kept in decoded text
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    max_positions: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """A Llama-style (OLMo-2) causal LM with random weights, sized for a CPU (about 0.1M params at the defaults)."""
    import torch

    config = Olmo2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        attention_dropout=0.0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def save_tiny_model(path: str | Path, seed: int = 0, **model_kwargs: int) -> Path:
    """Build the tiny tokenizer + model and save both to ``path`` (loadable by ``from_pretrained``)."""
    path = Path(path)
    tok = build_char_tokenizer(path)
    build_tiny_model(tok, seed=seed, **model_kwargs).save_pretrained(str(path))
    return path


# --- a tiny vision-language model ---------------------------------------------------------------------

VLM_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                      "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's chat template, reduced to what the tests and the vision quickstart use: text and images in a
# message's content list, one image placeholder per image; the processor expands each into its patches.
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_vlm_processor(*, min_pixels: int = 28 * 28, max_pixels: int = 56 * 56):
    """A Qwen2-VL processor built offline: a byte-level ``Qwen2Tokenizer`` (256 byte symbols, no merges) with
    the vision special tokens and the ``<think>``/``<answer>`` tags, and the image processor with small
    ``min_pixels``/``max_pixels`` (a 56x56 image becomes 16 patches, 4 image tokens)."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    vocab = {"<|endoftext|>": 0}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=VLM_SPECIAL_TOKENS[1:])
    tok.add_tokens(TAG_TOKENS)
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.padding_side = "left"
    tok.chat_template = VLM_CHAT_TEMPLATE
    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tok,
                            video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=VLM_CHAT_TEMPLATE)


def build_tiny_vlm(processor, *, kind: str = "qwen2_vl", hidden_size: int = 64, num_layers: int = 2,
                   vision_depth: int = 1, seed: int = 0):
    """A Qwen2-VL (``kind="qwen2_vl"``) or Qwen2.5-VL (``"qwen2_5_vl"``) with random weights, sized for a CPU
    (about 0.2M parameters at the defaults), matching ``processor``'s tokenizer."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids(VLM_SPECIAL_TOKENS)
    head_dim = hidden_size // 4
    text = dict(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [head_dim // 8, head_dim * 3 // 16, head_dim * 3 // 16]},
                bos_token_id=None, eos_token_id=ids[2], pad_token_id=ids[0])
    vision = dict(depth=vision_depth, hidden_size=hidden_size, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    if kind == "qwen2_vl":
        cls, config = Qwen2VLForConditionalGeneration, Qwen2VLConfig
        vision.update(embed_dim=32, mlp_ratio=2)
    elif kind == "qwen2_5_vl":
        cls, config = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLConfig
        vision.update(intermediate_size=64, out_hidden_size=hidden_size, window_size=28,
                      fullatt_block_indexes=[vision_depth - 1])
    else:
        raise ValueError(f"kind must be 'qwen2_vl' or 'qwen2_5_vl', got {kind!r}")
    cfg = config(text_config=text, vision_config=vision, image_token_id=ids[5], video_token_id=ids[6],
                 vision_start_token_id=ids[3], vision_end_token_id=ids[4], tie_word_embeddings=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(cfg)
    model.generation_config.pad_token_id = ids[0]
    model.generation_config.eos_token_id = ids[2]
    model.generation_config.bos_token_id = None
    return model


def save_tiny_vlm(path: str | Path, *, kind: str = "qwen2_vl", seed: int = 0) -> Path:
    """Build the tiny processor + vision-language model and save both to ``path`` (``from_pretrained`` loads them)."""
    path = Path(path)
    processor = build_vlm_processor()
    build_tiny_vlm(processor, kind=kind, seed=seed).save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return path

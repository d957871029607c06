r"""How a dataset question becomes the prompt a model sees: one builder for training and evaluation.

A :class:`PromptPreset` is a system prompt (or none), a user-turn template and whether the tokenizer's
chat template is applied. Templates are Python format strings with one field, ``{question}``; write a
literal brace as ``{{`` / ``}}`` (so ``\\boxed{{}}`` gives ``\\boxed{}``). A recipe picks a preset with
``data.prompt`` and may override its fields (``data.system_prompt``, ``data.template``,
``data.chat_template``); ``gpgrl eval --prompt`` takes the same names. Training and evaluation build
prompts with the same :class:`PromptBuilder`, so a model is evaluated exactly as it was trained.

Presets (the prompts the paper's models were trained and evaluated with):

* ``plain``: the question alone, in the chat template when the tokenizer has one (the default).
* ``qwen_math_cot``: the Qwen2.5-Math chain-of-thought system prompt (the CoT prompt of the Qwen2.5-Math
  evaluation harness).
* ``qwen_boxed``: simpleRL-Zoo's prompt as its evaluation formats it: system "You are a helpful
  assistant.", the ``\boxed{}`` instruction after the question.
* ``simplelr_qwen``: what the paper's Qwen2.5-Math-7B run trained on, byte for byte: the prompt stored in
  simpleRL-Zoo's ``simplelr_qwen_level3to5/train.parquet`` (``prompt[0].content``, already in Qwen's chat
  template), which holds the instruction with its braces doubled, ``\boxed{{}}.``, as every one of its 8,523
  records does (the original's ``gpg.py`` sends that text unformatted): ``qwen_boxed`` with ``\boxed{{}}.``.
* ``r1_distill``: DeepSeek-R1-Distill models' recommended prompt: no system prompt, the instruction at
  the end of the user turn.
* ``r1_think``: the ``<think>``/``<answer>`` system prompt of the open-rs recipes that the GPG
  repository's DeepSeek-R1-Distill-Qwen-1.5B runs (GPG-Open-RS1) train with, with ``\boxed{} .``; the
  original's YAML gives ``\boxed{{}} .``, which the RS1 / RS3 recipes send as their ``data.system_prompt``.
* ``open_r1``: the original R1-Zero / open-r1 ``<think>``/``<answer>`` system prompt, without ``\boxed{}``.

Without a chat template (base models) the text is the system prompt, a blank line, then the templated
question; with one, the system prompt is the system turn and the templated question the user turn, and
the assistant turn is opened. A question that is already a list of chat messages (verl-style parquet
files) goes through the chat template as is.

>>> p = resolve_prompt("r1_distill")
>>> p.template.format(question="1+1?")
'1+1?\nPlease reason step by step, and put your final answer within \\boxed{}.'
>>> resolve_prompt("qwen_math_cot", system_prompt="").system_prompt is None
True
>>> resolve_prompt("simplelr_qwen").template.format(question="1+1?")   # the 7B training data's characters
'1+1?\nPlease reason step by step, and put your final answer within \\boxed{{}}.'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gpgrl.rollout.engine import Prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
#: The instruction as simpleRL-Zoo's training parquet (simplelr_qwen_level3to5/train.parquet) holds it: its
#: braces doubled, never formatted; the paper's Qwen2.5-Math-7B run trained on these characters.
SIMPLELR_TRAIN_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{{}}."

R1_ZERO_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>"
)

# open-rs recipes/grpo.yaml (the setup of the GPG repository's open-rs experiments).
R1_THINK_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer, and put your final answer within \\boxed{} . The reasoning process and answer are "
    "enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. Note that respond by English, NOT use other "
    "languages."
)


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` is a format string whose only field is ``{question}``."""
    try:
        text = template.format(question="\x00")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"invalid prompt template {template!r} ({type(e).__name__}: {e}); the only field is {{question}} "
            "and literal braces are written doubled, e.g. '{question} Put the answer in \\\\boxed{{}}.'"
        ) from None
    if "\x00" not in text:
        raise ValueError(f"prompt template {template!r} has no {{question}} field")


@dataclass(frozen=True)
class PromptPreset:
    """How a question becomes a prompt. ``system_prompt`` None = no system turn."""

    name: str
    system_prompt: str | None
    template: str
    chat_template: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        check_template(self.template)


PRESETS: dict[str, PromptPreset] = {
    p.name: p
    for p in [
        PromptPreset("plain", None, "{question}", description="the question alone"),
        PromptPreset(
            "qwen_math_cot",
            BOXED_INSTRUCTION,
            "{question}",
            description="Qwen2.5-Math CoT: system 'Please reason step by step, ... \\boxed{}.'",
        ),
        PromptPreset(
            "qwen_boxed",
            "You are a helpful assistant.",
            "{question}\n" + BOXED_INSTRUCTION.replace("{}", "{{}}"),
            description="simpleRL-Zoo / the paper's Qwen2.5-Math-7B data: system 'You are a helpful "
            "assistant.', the \\boxed{} instruction after the question",
        ),
        PromptPreset(
            "simplelr_qwen",
            "You are a helpful assistant.",
            "{question}\n" + SIMPLELR_TRAIN_INSTRUCTION.replace("{", "{{").replace("}", "}}"),
            description="the paper's Qwen2.5-Math-7B training prompt as simpleRL-Zoo's parquet stores it: "
            "qwen_boxed with the instruction's braces doubled, \\boxed{{}}.",
        ),
        PromptPreset(
            "r1_distill",
            None,
            "{question}\n" + BOXED_INSTRUCTION.replace("{}", "{{}}"),
            description="DeepSeek-R1-Distill: no system prompt; the \\boxed{} instruction after the question",
        ),
        PromptPreset(
            "r1_think",
            R1_THINK_SYSTEM_PROMPT,
            "{question}",
            description="GPG / open-rs <think>...</think><answer>...</answer> system prompt with \\boxed{}",
        ),
        PromptPreset(
            "open_r1",
            R1_ZERO_SYSTEM_PROMPT,
            "{question}",
            description="R1-Zero / open-r1 <think>...</think><answer>...</answer> system prompt",
        ),
    ]
}


def apply_overrides(
    preset: PromptPreset,
    *,
    system_prompt: str | None = None,
    template: str | None = None,
    chat_template: bool | None = None,
) -> PromptPreset:
    """``preset`` with the given fields replaced (None = keep; ``system_prompt=""`` = no system prompt)."""
    changes: dict[str, object] = {}
    if system_prompt is not None:
        changes["system_prompt"] = system_prompt or None
    if template is not None:
        changes["template"] = template
    if chat_template is not None:
        changes["chat_template"] = chat_template
    return replace(preset, **changes) if changes else preset


def resolve_prompt(
    preset: str | PromptPreset = "plain",
    *,
    system_prompt: str | None = None,
    template: str | None = None,
    chat_template: bool | None = None,
) -> PromptPreset:
    """A preset (by name, or as is) with optional overrides; ``system_prompt=""`` removes its system prompt."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown prompt preset {preset!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    return apply_overrides(preset, system_prompt=system_prompt, template=template, chat_template=chat_template)


def renders_tools(owner: Any) -> bool:
    """Whether a tokenizer's (or processor's) chat template lists the tools it is given (mentions ``tools``)."""
    template = getattr(owner, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one
        template = template.get("default") or next(iter(template.values()), None)
    return isinstance(template, str) and "tools" in template


class PromptBuilder:
    """Formats and tokenizes questions the same way for training, evaluation and warm-starts.

    Args:
        tokenizer: the policy's tokenizer, or a vision-language model's processor (then questions may come
            with images: each image is a ``{"type": "image"}`` item before the question's text in the user
            turn, and the processor expands it into the model's image tokens and pixel inputs).
        preset: a :class:`PromptPreset` or a preset name.
        max_length: prompt tokens kept; longer text prompts lose their *beginning* (the question's tail and
            the opened assistant turn are what the model continues); a prompt with images is never cut
            (that would cut image tokens) and is an error instead. None = no limit.

    >>> from gpgrl.models.tiny import build_char_tokenizer
    >>> b = PromptBuilder(build_char_tokenizer(), resolve_prompt("plain", system_prompt="Add."))
    >>> b.text("1+2")
    '<|system|>Add.<|end|><|user|>1+2<|end|><|assistant|>'
    >>> PromptBuilder(b.tokenizer, resolve_prompt("plain", system_prompt="Add.", chat_template=False)).text("1+2")
    'Add.\\n\\n1+2'
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase | Any, preset: PromptPreset | str = "plain", *,
                 max_length: int | None = None, tools: Sequence[Any] = (), tool_instructions: str | None = None):
        # an episode's tools: the chat template lists them (apply_chat_template(tools=...)); a template that
        # does not (no `tools` in it) gets tool_instructions in words instead (see text())
        self.tools = list(tools)
        self.tool_instructions = tool_instructions
        self.processor = tokenizer if hasattr(tokenizer, "image_processor") else None
        self.tokenizer = tokenizer.tokenizer if self.processor is not None else tokenizer
        self.preset = resolve_prompt(preset) if isinstance(preset, str) else preset
        self.max_length = max_length
        template_owner = self.processor if self.processor is not None else self.tokenizer
        if self.preset.chat_template and getattr(template_owner, "chat_template", None) is None:
            raise ValueError(
                "the tokenizer has no chat template (a base model?): set data.chat_template: false in the "
                "recipe (gpgrl eval: --no-chat-template) to use plain-text prompts"
            )

    def text(self, question: str | Sequence[dict[str, Any]], num_images: int = 0) -> str:
        """The prompt text of one question (a string, or a list of chat messages used as they are)."""
        owner = self.processor if self.processor is not None else self.tokenizer
        tools = {"tools": self.tools} if self.tools else {}
        if not isinstance(question, str):
            return owner.apply_chat_template(list(question), tokenize=False, add_generation_prompt=True, **tools)
        p = self.preset
        body = p.template.format(question=question)
        if num_images and (self.processor is None or not p.chat_template):
            raise ValueError("a question with images needs a vision-language model's processor and its chat template "
                             "(data.chat_template must not be false)")
        if not p.chat_template:
            if self.tools:
                raise ValueError("tools are listed to the model by its chat template, and data.chat_template is false; "
                                 "use the chat template (an instruct model) with rollout.tools")
            return f"{p.system_prompt}\n\n{body}" if p.system_prompt else body
        system = p.system_prompt
        if self.tools and not renders_tools(owner):
            if self.tool_instructions is None:
                raise ValueError("this model's chat template does not list tools, and the tools' call format has no "
                                 "instructions to write into the system prompt; use a model whose template lists "
                                 "tools (docs/agents.md)")
            # after the system prompt; with none, before the question, so that a template's own default
            # system prompt (added to a conversation without a system turn, as SmolLM2's does) is kept
            if system:
                system = f"{system}\n\n{self.tool_instructions}"
            else:
                body = f"{self.tool_instructions}\n\n{body}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if num_images:
            content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": body}]
            messages.append({"role": "user", "content": content})
        else:
            messages.append({"role": "user", "content": body})
        return owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **tools)

    def encode(self, text: str, *, chat: bool | None = None) -> tuple[list[int], bool]:
        """Token ids of a formatted text prompt and whether it was cut to ``max_length`` (keeping its end).

        A chat-templated prompt already holds its special tokens (BOS included), so none are added again.
        """
        chat = self.preset.chat_template if chat is None else chat
        ids = self.tokenizer(text, add_special_tokens=not chat)["input_ids"]
        if self.max_length is not None and len(ids) > self.max_length:
            return ids[-self.max_length :], True
        return ids, False

    def build(self, question: str | Sequence[dict[str, Any]], images: Sequence[Any] = ()) -> tuple[Prompt, bool]:
        """``(Prompt(ids, text, model_inputs, images), truncated)`` for one question and its images."""
        text = self.text(question, num_images=len(images))
        if not images:
            ids, cut = self.encode(text, chat=self.preset.chat_template or not isinstance(question, str))
            return Prompt(ids=ids, text=text), cut
        enc = self.processor(text=[text], images=list(images), return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        if self.max_length is not None and len(ids) > self.max_length:
            raise ValueError(f"a prompt with images is {len(ids)} tokens long, more than data.max_prompt_length="
                             f"{self.max_length}; raise it (image prompts are never cut) or use smaller images")
        width = enc["input_ids"].shape[1]
        # per-image inputs (pixel_values, image_grid_thw, ...) travel with the prompt; token-aligned ones
        # (attention_mask, mm_token_type_ids) are rebuilt from the padded ids where the model needs them
        per_image = {k: v for k, v in enc.items() if k != "input_ids" and hasattr(v, "shape")
                     and not (v.dim() == 2 and v.shape[0] == 1 and v.shape[1] == width)}
        return Prompt(ids=ids, text=text, model_inputs=per_image, images=tuple(images)), False

"""How an evaluation runs, in one object, checked in one place.

:class:`EvalSettings` holds every choice of an evaluation (sampling, prompt, data, grading, output);
:func:`check_settings` is the one validator: ``gpgrl eval`` calls it before it loads a model (so a bad
flag fails in a second, naming the flag), and :func:`gpgrl.eval.evaluate` calls it again for Python
callers. Its messages name the command-line flag (``--samples``); the Python field has the same name
without dashes (``samples``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpgrl.data.prompts import PromptPreset, check_template, resolve_prompt
from gpgrl.rollout.engine import SamplingParams

GRADINGS = ("reward", "original")


@dataclass
class EvalSettings:
    """Everything an evaluation is told besides the model, its tokenizer and the benchmarks.

    Sampling: ``samples`` (K completions per problem), ``max_new_tokens`` (None: the default budget, the
    benchmarks' own capped by the model's context, see ``docs/eval.md``; ``budget_from`` names the setting
    that gave it otherwise), ``temperature`` (0 = greedy),
    ``top_p``, ``top_k``, ``stop`` (None: each benchmark's own stop strings for plain-text prompts, none
    for chat prompts), ``batch_size`` (most rows per generate call), ``seed``.
    Prompt: ``prompt`` (a preset name or PromptPreset for every benchmark; None = each benchmark's own),
    ``system_prompt`` / ``template`` / ``chat_template`` override its fields.
    Data: ``data_dir``, ``limit``, ``image_dir``, ``sources`` (see :func:`gpgrl.eval.load_benchmarks`),
    ``skip_long_prompts`` (leave out the problems whose prompt does not fit the model's context, instead of
    stopping with an error before generating; see :func:`gpgrl.eval.evaluator.long_prompts`).
    Grading: ``grading`` (vision: ``reward`` or ``original``), ``grade_fn`` / ``extract_fn`` (text
    benchmarks: ``(completion, gold) -> bool`` and ``completion -> answer``).
    Output: ``output_dir`` (``results.json``, ``samples.jsonl``), ``show_progress`` (progress on stderr),
    ``progress_bar`` (a rich bar; None = on a terminal), ``show_table`` (None = when ``output_dir`` is
    set), ``model_name`` (for results.json and the first line), ``prefix`` (metric namespace).
    """

    samples: int = 1
    max_new_tokens: int | None = None
    budget_from: str = "--max-new-tokens"  # what set max_new_tokens, named in the first line printed
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] | None = None
    batch_size: int = 32
    seed: int | None = None
    prompt: str | PromptPreset | None = None
    system_prompt: str | None = None
    template: str | None = None
    chat_template: bool | None = None
    data_dir: str | Path | None = None
    limit: int | None = None
    image_dir: str | Path | None = None
    sources: Mapping[str, str] | Sequence[str] | None = None
    skip_long_prompts: bool = False
    grading: str = "reward"
    grade_fn: Callable[[str, str], bool] | None = None
    extract_fn: Callable[[str], str | None] | None = None
    output_dir: str | Path | None = None
    show_progress: bool = True
    progress_bar: bool | None = None
    show_table: bool | None = None
    model_name: str | None = None
    prefix: str = "eval"
    episodes: Any = None  # a gpgrl.rollout.episodes.EpisodeSetup: multi-turn episodes (tools); None = one answer

    @classmethod
    def of(cls, settings: EvalSettings | None = None, sampling: SamplingParams | None = None,
           **options: Any) -> EvalSettings:
        """``settings`` (or the defaults) with ``options`` replaced; ``sampling`` sets max_new_tokens,
        temperature, top_p, top_k (and stop, when it has any) at once. Unknown option names raise TypeError.

        >>> EvalSettings.of(samples=4, temperature=0.6).samples
        4
        >>> EvalSettings.of(sampling=SamplingParams(512, 0.0)).max_new_tokens
        512
        """
        if sampling is not None:
            options = {"max_new_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                       "top_p": sampling.top_p, "top_k": sampling.top_k,
                       **({"stop": sampling.stop} if sampling.stop else {}), **options}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown evaluation setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return dataclasses.replace(settings or cls(), **options)

    def sampling(self, max_new_tokens: int, stop: Sequence[str] = ()) -> SamplingParams:
        """The engine's SamplingParams with a resolved budget and stop strings."""
        return SamplingParams(max_new_tokens, self.temperature, self.top_p, self.top_k,
                              tuple(self.stop) if self.stop is not None else tuple(stop))

    def preset(self, own: PromptPreset) -> PromptPreset:
        """The prompt of a benchmark whose own preset is ``own``, with this run's choice and overrides."""
        return resolve_prompt(own if self.prompt is None else self.prompt, system_prompt=self.system_prompt,
                              template=self.template, chat_template=self.chat_template)


def check_settings(s: EvalSettings, vision_benchmarks: Sequence[str] = ()) -> None:
    """ValueError, naming the flag and the fix, for any setting that cannot work (nothing is loaded).

    >>> check_settings(EvalSettings(samples=4))
    Traceback (most recent call last):
    ...
    ValueError: --samples 4 with --temperature 0 (greedy) gives 4 identical answers per problem; add --temperature 0.6 (or another > 0), or drop --samples
    """
    for flag, value in (("samples", s.samples), ("batch-size", s.batch_size), ("limit", s.limit),
                        ("max-new-tokens", s.max_new_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be >= 1, got {value}")
    if s.samples > 1 and s.temperature == 0:  # identical answers; vLLM refuses n > 1 with greedy decoding
        raise ValueError(f"--samples {s.samples} with --temperature 0 (greedy) gives {s.samples} identical answers "
                         "per problem; add --temperature 0.6 (or another > 0), or drop --samples")
    if s.grading not in GRADINGS:
        raise ValueError(f"--grading must be one of {', '.join(GRADINGS)}, got {s.grading!r}")
    try:
        s.sampling(s.max_new_tokens or 1)
    except ValueError as e:  # SamplingParams names the field: say the flag
        field = str(e).split(" ", 1)[0]
        raise ValueError(f"--{field.replace('_', '-')}: {e}") from None
    if isinstance(s.prompt, str):
        resolve_prompt(s.prompt, system_prompt=s.system_prompt, template=s.template)
    elif s.template is not None:
        check_template(s.template)
    if vision_benchmarks and s.chat_template is False:
        raise ValueError(f"{', '.join(vision_benchmarks)}: prompts with images need the chat template; drop "
                         "--no-chat-template")

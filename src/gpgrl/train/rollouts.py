"""The rollout side of a training step: prompts -> G answers each -> rewards -> threshold resampling.

:class:`Rollouts` draws prompts (its :class:`~gpgrl.data.samplers.PromptSampler`), has the engine answer
them, scores the answers (:func:`gpgrl.rewards.scoring.score_batch`) and, with threshold resampling
(:mod:`gpgrl.algorithms.resampling`), draws again until enough groups carry a signal. It keeps the step's
reward bookkeeping: the functions that failed for every answer (several steps in a row stop the run), the
last problem of each, and the seconds spent in each. The trainer orders the step around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from gpgrl.algorithms import AlgorithmConfig, degenerate_groups
from gpgrl.algorithms.resampling import enough_signal, gathered_selection, kept_with_signal, select_groups
from gpgrl.config import Config
from gpgrl.data.datasets import get_field
from gpgrl.data.images import load_images
from gpgrl.data.prompts import PromptBuilder
from gpgrl.data.samplers import PromptSampler
from gpgrl.parallel import gathered_for_engine
from gpgrl.rewards.scoring import FailureTracker, RewardFunction, score_batch
from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import Prompt, RolloutEngine, SamplingParams, pad_token_id
from gpgrl.rollout.episodes import EpisodeSetup, episode_columns, run_episodes
from gpgrl.train.errors import TrainingError
from gpgrl.train.logging import StepPhases


class Rollouts:
    """Scored rollout batches for the trainer, ``local_prompts`` groups of G answers on each process.

    Args:
        cfg, algo: the run's settings and its resolved algorithm (``cfg.algo``).
        accelerator: the run's Accelerator (every process takes part in every draw).
        model: the (prepared) policy the engine generates with; engine: the rollout engine.
        records: the prompt records; prompts: their prompt builder (template, chat format, prompt budget).
        rewards: the reward functions.
        counters: the run's counters; ``prompts_truncated`` and ``resample_budget_exhausted`` count here.
        warn: ``warn(key, text)`` prints a warning once per key.
        episodes: multi-turn episodes (tools or an environment; :mod:`gpgrl.rollout.episodes`); None = one
            answer per rollout.
    """

    def __init__(self, cfg: Config, algo: AlgorithmConfig, accelerator: Accelerator, *, model: torch.nn.Module,
                 engine: RolloutEngine, records: list[dict[str, Any]], prompts: PromptBuilder,
                 rewards: Sequence[RewardFunction], counters: dict[str, int], warn: Callable[[str, str], None],
                 episodes: EpisodeSetup | None = None):
        self.cfg, self.algo, self.acc, self.model, self.engine = cfg, algo, accelerator, model, engine
        self.episodes = episodes
        self.records, self.prompts, self.rewards, self.counters, self._warn = records, prompts, rewards, counters, warn
        self.local_prompts = cfg.train.prompts_per_step // accelerator.num_processes
        self.pad_id = pad_token_id(prompts.tokenizer)
        self.sampler = PromptSampler(len(records), seed=cfg.train.seed, strategy=cfg.data.sample_strategy)
        r = cfg.rollout
        self.sampling = SamplingParams(max_new_tokens=r.max_completion_length, temperature=r.temperature,
                                       top_p=r.top_p, top_k=r.top_k)
        self.failures = FailureTracker([f.name for f in rewards], cfg.train.max_reward_failure_steps)
        self.reward_seconds: dict[str, float] = {}  # seconds spent in each reward function in this step
        self._failed_now: set[str] = set()  # reward functions that gave nothing usable in this step
        self._last_problem: dict[str, str] = {}
        self._prompt_cache: dict[int, tuple[Prompt, bool]] = {}
        self.phases = StepPhases(0)  # what a slow step is doing, for the user (the trainer sets its logger's)
        self._draw = 0  # the threshold-resampling draw of this step (0 = the first)

    def prompt(self, index: int) -> Prompt:
        """Record ``index``'s prompt (text prompts built once; images read each time they are used)."""
        d = self.cfg.data
        if d.image_column:  # images are read when used (once per prompt per draw), never all up front
            question = get_field(self.records[index], d.prompt_column)
            return self.prompts.build(str(question), load_images(self.records[index], d.image_column, d.image_dir))[0]
        if index not in self._prompt_cache:
            question = get_field(self.records[index], d.prompt_column)
            self._prompt_cache[index] = self.prompts.build(question if isinstance(question, list) else str(question))
        prompt, cut = self._prompt_cache[index]
        if cut:
            self.counters["prompts_truncated"] += 1
            self._warn("prompt_cut", f"prompts longer than data.max_prompt_length={self.prompts.max_length} "
                                     "tokens lose their beginning (counted in rollout/prompts_truncated); if "
                                     "that matters, shorten them or use a model with a longer context")
        return prompt

    def rollout(self, indices: list[int]) -> RolloutBatch:
        """G answers to each prompt index, scored: a :class:`RolloutBatch` with rewards and metadata."""
        G, world = self.cfg.rollout.group_size, self.acc.num_processes
        prompts = [self.prompt(i) for i in indices]
        again = f" (threshold resampling: draw {self._draw + 1})" if self._draw else ""
        self.phases(f"generating {len(indices) * world * G} answers to {len(indices) * world} prompts{again}")
        # the parameters gathered for the engine (vLLM holds its own copy: no gather); its progress shown
        with gathered_for_engine(self.acc, self.model, self.engine), \
                self.phases.generating(self.engine, len(prompts) * G, share=world > 1):
            batch = self.generate(prompts, [self.records[i] for i in indices], G)
        if len(batch) != len(indices) * G:
            raise TrainingError(f"the rollout engine returned {len(batch)} answers for {len(indices)} prompts x G={G}")
        rows = [i for i in indices for _ in range(G)]
        batch.records = [self.records[i] for i in rows]
        batch.prompts = [p.text for p in prompts for _ in range(G)]
        batch.prompt_index = torch.tensor(rows, dtype=torch.long)
        answers = [_get(r, self.cfg.data.answer_column) for r in batch.records]
        self.phases(f"scoring {len(batch) * world} answers")
        scores = score_batch(self.rewards, batch.texts, batch.records, prompts=batch.prompts, answer=answers,
                             extra=episode_columns(batch.episodes))
        batch.rewards, batch.rewards_per_fn = scores.total, scores.per_fn
        for name, problem in scores.problems.items():
            self._last_problem[name] = problem
            self._warn(f"reward:{name}:{problem.split(' ')[0]}",
                       f"reward {name!r} {problem}; those answers get no reward (counted in reward/failures)")
        self._failed_now.update(scores.failed_all)
        for name, seconds in scores.seconds.items():
            self.reward_seconds[name] = self.reward_seconds.get(name, 0.0) + seconds
        return batch

    def generate(self, prompts: list[Prompt], records: list[dict[str, Any]], G: int) -> RolloutBatch:
        """G answers to each prompt: one engine call, or a multi-turn episode each (one engine call per turn)."""
        if self.episodes is None:
            return self.engine.generate(prompts, self.sampling, G)
        world = self.acc.num_processes
        return run_episodes(self.engine, prompts, records, self.sampling, G, self.episodes.make_env,
                            tokenizer=self.prompts.tokenizer, max_turns=self.episodes.max_turns, pad_id=self.pad_id,
                            on_turn=lambda turn, live: self.phases(
                                f"turn {turn}: {live} episodes still running" + (" on this process" if world > 1
                                                                                 else "")))

    def collect(self) -> tuple[RolloutBatch, dict[str, float]]:
        """Draw and score rollouts, with threshold resampling (:mod:`gpgrl.algorithms.resampling`).

        Every process takes part in every draw (the decision uses all-reduced counts), keeps its own
        groups, and ends with exactly ``local_prompts`` groups.
        """
        G, P_local, P = self.cfg.rollout.group_size, self.local_prompts, self.cfg.train.prompts_per_step
        rank = self.acc.process_index
        self._failed_now = set()
        self.reward_seconds = {}
        drawn: list[RolloutBatch] = []
        degenerate: list[bool] = []  # per local group, in draw order
        per_draw: list[list[bool]] = []
        gathered = self.algo.resample_count == "gathered"
        for draw in range(self.algo.max_resample_draws):
            self._draw = draw
            if draw:
                self.phases.draw()
            indices = self.sampler.draw(P)[rank * P_local : (rank + 1) * P_local]
            batch = self.rollout(indices)
            drawn.append(batch)
            per_draw.append(degenerate_groups(batch.rewards, G).tolist())
            degenerate += per_draw[-1]
            self._update_sampler(indices, batch.rewards)
            # kept: groups with a signal among those kept, per process at most its share; gathered (the
            # original's): every group with a signal drawn on any process, uncapped. A reward that gave
            # nothing usable for any answer (on any process) would fail the same way in every further
            # draw: stop drawing now, and let check_rewards count the step.
            count = sum(not d for d in degenerate) if gathered else kept_with_signal(degenerate, P_local)
            kept = torch.tensor([count, len(self._failed_now)], device=self.acc.device)
            global_kept, failing = (int(x) for x in self.acc.reduce(kept, reduction="sum").tolist())
            if failing or enough_signal(global_kept, P, self.algo.resample_threshold):
                break
        else:
            self.counters["resample_budget_exhausted"] += 1
            self._warn("resample", f"threshold resampling spent its {len(drawn)} draws with {global_kept}/{P} groups "
                                   "carrying a signal; training on what there is "
                                   "(counted in rollout/resample_budget_exhausted)")
        self._draw = 0
        every = torch.cat([b.rewards for b in drawn])
        finite = every[~torch.isnan(every)]
        total = self.acc.reduce(torch.tensor([float(finite.sum()), float(finite.numel())], dtype=torch.float64,
                                             device=self.acc.device), reduction="sum").tolist()
        groups = gathered_selection(per_draw, P_local) if gathered else select_groups(degenerate, P_local)
        rows = [g * G + j for g in groups for j in range(G)]
        batch = RolloutBatch.cat(drawn, self.pad_id).select(rows)
        # The trained batch's reward reads high when resampling has dropped groups without a signal;
        # this one averages every answer sampled in this step, so presets can be compared fairly.
        return batch, {"rollout/draws": float(len(drawn)), "rollout/valid_groups_counted": float(global_kept),
                       "reward/sampled_mean": total[0] / total[1] if total[1] else float("nan")}

    def _update_sampler(self, indices: list[int], rewards: torch.Tensor) -> None:
        """Tell a curriculum sampler each group's mean reward (identical on every process)."""
        if self.sampler.strategy == "uniform":
            return
        G = self.cfg.rollout.group_size
        grouped = rewards.view(-1, G)
        means = torch.nanmean(grouped, dim=1).tolist()  # NaN when every reward of the group failed
        local = list(zip(indices, means))
        everyone = gather_object(local) if self.acc.num_processes > 1 else local
        self.sampler.update([i for i, _ in everyone], [m for _, m in everyone])

    def check_rewards(self, step: int) -> None:
        """Stop (:class:`TrainingError`) when a reward function has failed for every answer
        ``max_reward_failure_steps`` steps in a row; ``step`` is the step that just collected (1-based)."""
        names = list(self.failures.steps)
        failed = torch.tensor([float(n in self._failed_now) for n in names], device=self.acc.device)
        failed = self.acc.reduce(failed, reduction="sum").tolist()  # every process decides the same
        broken = self.failures.end_step({n for n, count in zip(names, failed) if count})
        if broken:
            name = broken[0]
            raise TrainingError(
                f"reward {name!r} gave no usable value for any answer in {self.failures.limit} steps in a row "
                f"(step {step}); its last problem: {self._last_problem.get(name, 'it failed on another process')}. "
                "Fix the reward function (train.max_reward_failure_steps sets how many steps to allow)."
            )


def _get(record: dict[str, Any], column: str) -> Any:
    try:
        return get_field(record, column)
    except KeyError:
        return None

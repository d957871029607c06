"""The GPG training loop: one loop for every preset, on one CPU or many GPUs through Accelerate.

One step, as data (B = prompts_per_step x G answers over all processes)::

    sampler -> P prompts (each process: P / num_processes whole prompts)
    -> engine.generate: G answers per prompt                  RolloutBatch [B_local rows, group by group]
    -> rewards.score_batch (weighted sum; unusable = NaN)      batch.rewards [B_local]
    -> threshold resampling (algorithms.resampling): draw more until the global share of groups
       with a signal >= threshold, keep P_local groups
    -> gather rewards over processes -> group_advantages       A [B] (alpha and degenerate groups: global)
    -> per micro-batch: log-probs -> policy_loss(num_tokens = global completion tokens) -> backward
    -> clip grad norm -> optimizer step -> engine.update_weights
       (skipped when no group carries a signal or the gradient is not finite)

The trainer orders these steps; the maths lives in :mod:`gpgrl.algorithms`, reward scoring in
:mod:`gpgrl.rewards.scoring`, sampling in :mod:`gpgrl.rollout`, prompts in :mod:`gpgrl.data.prompts`.
:meth:`Trainer.from_config` builds everything a recipe names; the constructor takes ready objects.

Differences from the original GPG code, on purpose:

* threshold resampling never raises when its draws run out: it trains on what it has, warns once and
  counts it in ``rollout/resample_budget_exhausted``;
* the token-mean loss divides by the completion tokens of the whole global batch (the original
  averages per device), so the gradient does not depend on micro-batching or the number of processes.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed

from gpgrl.algorithms import AlgorithmConfig, degenerate_groups, group_advantages, policy_loss
from gpgrl.algorithms.importance import truncated_is_weights
from gpgrl.algorithms.resampling import (
    enough_signal,
    gathered_alpha,
    gathered_selection,
    kept_with_signal,
    select_groups,
)
from gpgrl.config import Config, to_yaml
from gpgrl.data.datasets import check_columns, get_field
from gpgrl.data.images import load_images
from gpgrl.data.prompts import PromptBuilder
from gpgrl.data.samplers import PromptSampler
from gpgrl.models.logprobs import completion_logprobs
from gpgrl.models.vision import is_vision_model
from gpgrl.openr1 import steps_for_epochs
from gpgrl.parallel import gathered_for_generation
from gpgrl.rewards.scoring import FailureTracker, RewardFunction, as_reward_functions, score_batch
from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import Prompt, RolloutEngine, SamplingParams, model_context_length, pad_token_id
from gpgrl.rollout.registry import make_engine
from gpgrl.train import checkpoint
from gpgrl.train.build import make_accelerator, make_optimizer, make_scheduler
from gpgrl.train.logging import MetricsLogger
from gpgrl.train.metrics import rollout_metrics


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run at a step boundary, after a checkpoint of that step was saved."""


class Trainer:
    """Trains a policy with ``cfg.algorithm`` (GPG by default) on ready-made parts.

    Args:
        cfg: the run's settings (a :class:`~gpgrl.config.Config`); ``cfg.model``/``cfg.data.dataset``/
            ``cfg.rewards`` are only read by :meth:`from_config`.
        model, tokenizer: the policy and its tokenizer.
        dataset: the prompt records (dicts holding ``cfg.data.prompt_column`` and ``answer_column``).
        rewards: reward functions: names, callables ``fn(completions, **columns) -> list[float]``,
            ``(name_or_fn, weight)`` pairs or :class:`~gpgrl.rewards.scoring.RewardFunction`.
        ref_model: the frozen reference for the KL term (needed when the preset's ``beta > 0``).
        accelerator: an ``accelerate.Accelerator``; default: a new one for this machine.
        engine: a :class:`~gpgrl.rollout.RolloutEngine`; default: transformers ``generate``
            (``rollout.engine: hf``), or the vLLM engine the config names.
    """

    def __init__(self, cfg: Config, *, model: torch.nn.Module, tokenizer: Any, dataset: Sequence[dict[str, Any]],
                 rewards: Sequence[Any], ref_model: torch.nn.Module | None = None,
                 accelerator: Accelerator | None = None, engine: RolloutEngine | None = None):
        self.cfg = cfg
        self.algo = cfg.resolved_algorithm()
        self.acc = accelerator or make_accelerator(cfg)
        set_seed(cfg.train.seed)
        self.output_dir = Path(cfg.train.output_dir)
        world = self.acc.num_processes
        if cfg.train.prompts_per_step % world:
            raise ValueError(f"train.prompts_per_step={cfg.train.prompts_per_step} must be a multiple of the number "
                             f"of processes ({world}) so that every process gets whole groups")
        self.local_prompts = cfg.train.prompts_per_step // world
        self.records = list(dataset)
        if cfg.train.epochs is not None:  # passes over the data decide the steps (and the schedule's length)
            cfg.train.steps = steps_for_epochs(len(self.records), cfg.train.prompts_per_step, cfg.train.epochs)
        check_columns(self.records, {"data.prompt_column": cfg.data.prompt_column,
                                     "data.answer_column": cfg.data.answer_column}, cfg.data.dataset or "dataset")
        self.rewards: list[RewardFunction] = as_reward_functions(rewards)
        if self.algo.beta > 0 and ref_model is None:
            raise ValueError(f"the {self.algo.name} preset has a KL term (beta={self.algo.beta}) and needs ref_model")
        self.tokenizer = tokenizer  # or a vision-language model's processor
        self._vision = is_vision_model(model)  # positions are the model's own (Qwen2-VL's 3-D rotary ones)
        cfg.data.max_prompt_length = prompt_budget(cfg, model_context_length(model))
        self.prompts = PromptBuilder(tokenizer, cfg.data.prompt_preset(), max_length=cfg.data.max_prompt_length)
        self.pad_id = pad_token_id(self.prompts.tokenizer)
        optimizer = make_optimizer(cfg, model)
        self.model, self.optimizer, self.scheduler = self.acc.prepare(model, optimizer, make_scheduler(cfg, optimizer))
        self.ref_model = ref_model.to(self.acc.device).eval().requires_grad_(False) if ref_model is not None else None
        self.engine = engine or make_engine(cfg, self.acc, self.model, tokenizer)
        self.sampler = PromptSampler(len(self.records), seed=cfg.train.seed, strategy=cfg.data.sample_strategy)
        self.sampling = SamplingParams(max_new_tokens=cfg.rollout.max_completion_length,
                                       temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                                       top_k=cfg.rollout.top_k)
        self._eval_problems: dict[str, list] | None = None
        if cfg.train.eval_every and cfg.train.eval_benchmarks:  # a misnamed or missing benchmark fails now
            self._eval_problems = self._load_eval_problems()
        # Only now, with every part built and every setting checked, is the output folder touched: with
        # train.overwrite it deletes the previous run, which a bad setting must never cost.
        if self.acc.is_main_process:  # a folder holding another run is never appended to silently
            checkpoint.prepare_output_dir(self.output_dir, resume=cfg.train.resume, overwrite=cfg.train.overwrite)
        self.acc.wait_for_everyone()
        self.step = 0
        self.counters = {"resample_budget_exhausted": 0, "nan_steps_in_a_row": 0, "prompts_truncated": 0}
        self.failures = FailureTracker([r.name for r in self.rewards], cfg.train.max_reward_failure_steps)
        self._last_problem: dict[str, str] = {}
        self._failed_now: set[str] = set()  # reward functions that gave nothing usable in this step
        self._reward_seconds: dict[str, float] = {}  # seconds spent in each reward function in this step
        self._prompt_cache: dict[int, tuple[Prompt, bool]] = {}
        self._warned: set[str] = set()
        self._recent: list[dict[str, Any]] = []
        self._stop_requested = False  # set by the first Ctrl-C (_graceful_ctrl_c)
        if cfg.train.resume:
            self._resume()
        self.logger = MetricsLogger(
            self.output_dir, report_to=cfg.log.report_to, enabled=self.acc.is_main_process,
            total_steps=cfg.train.steps, start_step=self.step, resumed=cfg.train.resume, progress=cfg.log.progress,
            run_name=cfg.log.run_name, wandb_project=cfg.log.wandb_project, config=cfg.to_dict(),
        )
        if self.acc.is_main_process:
            (self.output_dir / "config.yaml").write_text(to_yaml(cfg))

    @classmethod
    def from_config(cls, cfg: Config, **parts: Any) -> Trainer:
        """Build every part ``cfg`` names (dataset, rewards, tokenizer, model, reference model; see
        :func:`gpgrl.train.build.build_parts`) and the trainer. Any part passed by keyword (``model=``,
        ``tokenizer=``, ``dataset=``, ``rewards=``, ``ref_model=``, ``accelerator=``, ``engine=``) is used
        instead of building it."""
        from gpgrl.train.build import build_parts

        return cls(cfg, **build_parts(cfg, **parts))

    # ------------------------------------------------------------------------------------------ setup
    def _warn_once(self, key: str, text: str) -> None:
        """Print ``[gpgrl] warning: text`` once per ``key``, from the main process, above the progress bar."""
        if key in self._warned:
            return
        self._warned.add(key)
        if self.acc.is_main_process:
            logger = getattr(self, "logger", None)  # not there yet while resuming
            if logger is not None:
                logger.message(f"[gpgrl] warning: {text}")
            else:
                print(f"[gpgrl] warning: {text}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------------------------------- rollout
    def _prompt(self, index: int) -> Prompt:
        d = self.cfg.data
        if d.image_column:  # images are read when used (once per prompt per draw), never all up front
            question = get_field(self.records[index], d.prompt_column)
            return self.prompts.build(str(question), load_images(self.records[index], d.image_column, d.image_dir))[0]
        if index not in self._prompt_cache:
            question = get_field(self.records[index], self.cfg.data.prompt_column)
            self._prompt_cache[index] = self.prompts.build(question if isinstance(question, list) else str(question))
        prompt, cut = self._prompt_cache[index]
        if cut:
            self.counters["prompts_truncated"] += 1
            self._warn_once("prompt_cut", f"prompts longer than data.max_prompt_length={self.cfg.data.max_prompt_length} "
                                          "tokens lose their beginning (counted in rollout/prompts_truncated); if "
                                          "that matters, shorten them or use a model with a longer context")
        return prompt

    def rollout(self, indices: list[int]) -> RolloutBatch:
        """G answers to each prompt index, scored: a :class:`RolloutBatch` with rewards and metadata."""
        G = self.cfg.rollout.group_size
        prompts = [self._prompt(i) for i in indices]
        with gathered_for_generation(self.acc, self.model):
            batch = self.engine.generate(prompts, self.sampling, G)
        if len(batch) != len(indices) * G:
            raise TrainingError(f"the rollout engine returned {len(batch)} answers for {len(indices)} prompts x G={G}")
        rows = [i for i in indices for _ in range(G)]
        batch.records = [self.records[i] for i in rows]
        batch.prompts = [p.text for p in prompts for _ in range(G)]
        batch.prompt_index = torch.tensor(rows, dtype=torch.long)
        answers = [_get(r, self.cfg.data.answer_column) for r in batch.records]
        scores = score_batch(self.rewards, batch.texts, batch.records, prompts=batch.prompts, answer=answers)
        batch.rewards, batch.rewards_per_fn = scores.total, scores.per_fn
        for name, problem in scores.problems.items():
            self._last_problem[name] = problem
            self._warn_once(f"reward:{name}:{problem.split(' ')[0]}",
                            f"reward {name!r} {problem}; those answers get no reward (counted in reward/failures)")
        self._failed_now.update(scores.failed_all)
        for name, seconds in scores.seconds.items():
            self._reward_seconds[name] = self._reward_seconds.get(name, 0.0) + seconds
        return batch

    def collect(self) -> tuple[RolloutBatch, dict[str, float]]:
        """Draw and score rollouts, with threshold resampling (:mod:`gpgrl.algorithms.resampling`).

        Every process takes part in every draw (the decision uses all-reduced counts), keeps its own
        groups, and ends with exactly ``local_prompts`` groups.
        """
        G, P_local, P = self.cfg.rollout.group_size, self.local_prompts, self.cfg.train.prompts_per_step
        rank = self.acc.process_index
        self._failed_now = set()
        self._reward_seconds = {}
        drawn: list[RolloutBatch] = []
        degenerate: list[bool] = []  # per local group, in draw order
        per_draw: list[list[bool]] = []
        gathered = self.algo.resample_count == "gathered"
        for _ in range(self.algo.max_resample_draws):
            indices = self.sampler.draw(P)[rank * P_local : (rank + 1) * P_local]
            batch = self.rollout(indices)
            drawn.append(batch)
            per_draw.append(degenerate_groups(batch.rewards, G).tolist())
            degenerate += per_draw[-1]
            self._update_sampler(indices, batch.rewards)
            # kept: groups with a signal among those kept, per process at most its share; gathered (the
            # original's): every group with a signal drawn on any process, uncapped. A reward that gave
            # nothing usable for any answer (on any process) would fail the same way in every further
            # draw: stop drawing now, and let _check_rewards count the step.
            count = sum(not d for d in degenerate) if gathered else kept_with_signal(degenerate, P_local)
            kept = torch.tensor([count, len(self._failed_now)], device=self.acc.device)
            global_kept, failing = (int(x) for x in self.acc.reduce(kept, reduction="sum").tolist())
            if failing or enough_signal(global_kept, P, self.algo.resample_threshold):
                break
        else:
            self.counters["resample_budget_exhausted"] += 1
            self._warn_once("resample", f"threshold resampling spent its {len(drawn)} draws with {global_kept}/{P} groups "
                                        "carrying a signal; training on what there is "
                                        "(counted in rollout/resample_budget_exhausted)")
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

    def _check_rewards(self) -> None:
        """Stop when a reward function has failed for every answer ``max_reward_failure_steps`` steps in a row."""
        names = list(self.failures.steps)
        failed = torch.tensor([float(n in self._failed_now) for n in names], device=self.acc.device)
        failed = self.acc.reduce(failed, reduction="sum").tolist()  # every process decides the same
        broken = self.failures.end_step({n for n, count in zip(names, failed) if count})
        if broken:
            name = broken[0]
            raise TrainingError(
                f"reward {name!r} gave no usable value for any answer in {self.failures.limit} steps in a row "
                f"(step {self.step + 1}); its last problem: {self._last_problem.get(name, 'it failed on another process')}. "
                "Fix the reward function (train.max_reward_failure_steps sets how many steps to allow)."
            )

    # ----------------------------------------------------------------------------------------- update
    def train_step(self) -> dict[str, float]:
        """One rollout batch and (normally) one optimizer update; returns the step's metrics."""
        t0 = time.perf_counter()
        batch, metrics = self.collect()
        self._check_rewards()
        t_gen = time.perf_counter() - t0
        batch = batch.to(self.acc.device)
        global_r = self.acc.gather(batch.rewards)  # [B] float64, rank order = group order
        alpha = None  # AGE's B / (B - M) on the kept batch, or the original's count over every draw:
        if self.algo.resample_count == "gathered":
            alpha = gathered_alpha(int(metrics["rollout/valid_groups_counted"]), self.cfg.train.prompts_per_step)
        adv_all, stats = group_advantages(global_r.cpu(), self.cfg.rollout.group_size, scale=self.algo.scale,
                                          age=self.algo.age, alpha=alpha)
        N, rank = len(batch), self.acc.process_index
        adv = adv_all[rank * N : (rank + 1) * N].to(self.acc.device)  # [N]
        num_tokens = int(self.acc.reduce(batch.completion_mask.sum(), reduction="sum"))  # global completion tokens
        metrics.update(self._rollout_metrics(batch, global_r, stats, num_tokens))
        self._recent = [{"prompt": p, "completion": t, "reward": float(r), "advantage": float(a)}
                        for p, t, r, a in zip(batch.prompts, batch.texts, batch.rewards.tolist(), adv.tolist())]
        if stats["no_signal"] and self.algo.skip_no_signal:  # else step on zero advantages, as the original
            self.optimizer.zero_grad(set_to_none=True)
            self._scheduler_step()
            metrics.update({"optim/skipped": 1.0, "optim/lr": self.scheduler.get_last_lr()[0]})
        else:
            self.engine.sleep()
            step_algo = self.algo  # the original divides the KL term by inverse_alpha too: beta x alpha
            if self.algo.age_scales_kl and self.algo.age and self.algo.beta > 0 and stats["alpha"] > 0:
                step_algo = self.algo.replace(beta=self.algo.beta * stats["alpha"])
            metrics.update(self._update(batch, adv, num_tokens, int(global_r.numel()), step_algo))
            self.engine.wake_up()
            self.engine.update_weights(self.model)
        reward_seconds = sum(self._reward_seconds.values())
        metrics["perf/generation_seconds"] = t_gen - reward_seconds
        metrics["perf/reward_seconds"] = reward_seconds
        metrics.update({f"perf/reward_seconds/{name}": sec for name, sec in self._reward_seconds.items()})
        metrics["perf/step_seconds"] = step_seconds = time.perf_counter() - t0
        metrics["perf/tokens_per_s"] = num_tokens / max(step_seconds, 1e-9)
        slowest = max(self._reward_seconds, key=self._reward_seconds.get, default=None)
        if slowest is not None and self._reward_seconds[slowest] > 0.5 * step_seconds and step_seconds > 1.0:
            self._warn_once("slow_reward", f"reward {slowest!r} took {self._reward_seconds[slowest]:.1f} s of this "
                                           f"step's {step_seconds:.1f} s (perf/reward_seconds/{slowest}); make it "
                                           "faster, or bound each call with its timeout (rewards: [{name: ..., "
                                           "timeout: SECONDS}])")
        return metrics

    def _scheduler_step(self) -> None:
        """Advance the schedule once per step, also when the update was skipped (the schedule follows steps)."""
        with warnings.catch_warnings():  # a skipped optimizer step makes torch warn about the call order
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()

    def _logp(self, model: torch.nn.Module, batch: RolloutBatch, sl: slice, with_entropy: bool):
        return completion_logprobs(model, batch.prompt_ids[sl], batch.prompt_mask[sl], batch.completion_ids[sl],
                                   batch.completion_mask[sl], with_entropy=with_entropy,
                                   model_inputs=batch.model_inputs_for(sl), use_position_ids=not self._vision,
                                   # the distribution sampled from, or the untempered one (open-rs's pinned TRL)
                                   temperature=self.cfg.rollout.temperature if self.algo.tempered_logprobs else 1.0)

    def _update(self, batch: RolloutBatch, adv: torch.Tensor, num_tokens: int, num_sequences: int,
                algo: AlgorithmConfig | None = None) -> dict[str, float]:
        """Micro-batched forward/backward of the preset's loss, then one optimizer step per iteration.

        Per-token metrics of the loss (``kl``, ``clip_frac_*``, ``is/*``, ...) are averaged over the
        global batch's tokens; whatever :func:`policy_loss` reports is logged, under ``loss/``.
        """
        world, mbs = self.acc.num_processes, self.cfg.train.micro_batch_size
        slices = [slice(i, min(i + mbs, len(batch))) for i in range(0, len(batch), mbs)]
        with torch.no_grad():
            old = [self._logp(self.model, batch, sl, False)[0] for sl in slices] if self.algo.num_iterations > 1 \
                else [None] * len(slices)  # off-policy reuse: freeze the sampling policy's log-probs
            ref = [self._logp(self.ref_model, batch, sl, False)[0] for sl in slices] if self.ref_model is not None \
                else [None] * len(slices)
        cap = self.cfg.rollout.importance_cap
        sums: dict[str, float] = {}
        token_means: dict[str, float] = {}
        grad_norm, skipped = float("nan"), 0.0
        for _ in range(self.algo.num_iterations):
            for k, sl in enumerate(slices):
                sync = contextlib.nullcontext() if k == len(slices) - 1 else self.acc.no_sync(self.model)
                with sync:
                    logp, entropy = self._logp(self.model, batch, sl, with_entropy=True)
                    mask = batch.completion_mask[sl]
                    a = adv[sl]
                    extra: dict[str, float] = {}
                    if cap is not None and batch.sampling_logprobs is not None:
                        w, extra = truncated_is_weights(logp, batch.sampling_logprobs[sl], mask, cap=cap)
                        a = a.unsqueeze(1) * w  # [n, T]: the token's advantage times its importance weight
                    loss, m = policy_loss(logp, mask, a, preset=algo or self.algo, num_tokens=num_tokens,
                                          num_sequences=num_sequences, loss_constant=self.cfg.rollout.max_completion_length,
                                          old_logp=old[k], ref_logp=ref[k])
                    # DDP averages gradients over processes; each piece is already a share of the global
                    # loss, so multiply by the world size to sum them instead.
                    self.acc.backward(loss * world)
                tokens = m.pop("num_tokens")
                sums["loss/total"] = sums.get("loss/total", 0.0) + float(loss.detach())
                sums["loss/policy"] = sums.get("loss/policy", 0.0) + m.pop("pg_loss")
                m["entropy"] = float((entropy * mask).sum()) / max(tokens, 1.0)
                for key, value in {**{f"loss/{k2}": v for k2, v in m.items()}, **extra}.items():
                    token_means[key] = token_means.get(key, 0.0) + value * tokens  # token-weighted sums
            max_norm = self.cfg.optim.max_grad_norm
            grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(), max_norm if max_norm else float("inf")))
            if math.isfinite(grad_norm):
                self.optimizer.step()
                self.counters["nan_steps_in_a_row"] = 0
            else:
                self.counters["nan_steps_in_a_row"] += 1
                skipped = 1.0
            self.optimizer.zero_grad(set_to_none=True)
        self._scheduler_step()
        keys = sorted(sums) + sorted(token_means)  # the same keys, in the same order, on every process
        local = torch.tensor([sums.get(k, token_means.get(k)) for k in keys], dtype=torch.float64, device=self.acc.device)
        total = dict(zip(keys, self.acc.reduce(local, reduction="sum").tolist()))
        iters = self.algo.num_iterations
        out = {k: total[k] / iters for k in sums}
        out.update({k: total[k] / max(num_tokens * iters, 1) for k in token_means})
        out.update({"optim/grad_norm": grad_norm, "optim/lr": self.scheduler.get_last_lr()[0], "optim/skipped": skipped})
        if skipped:
            self._warn_once("nan", "a step had a non-finite loss or gradient and was skipped (optim/skipped)")
        return out

    def _rollout_metrics(self, batch: RolloutBatch, global_r: torch.Tensor, stats: dict[str, float],
                         num_tokens: int) -> dict[str, float]:
        m = rollout_metrics(self.acc.gather(batch.lengths.float()), self.acc.gather(batch.truncated.float()),
                            self.acc.gather(batch.rewards_per_fn), [r.name for r in self.rewards], global_r, stats)
        m.update({"rollout/num_tokens": float(num_tokens), "train/epoch": float(self.sampler.epoch),
                  **{f"rollout/{k}": float(v) for k, v in self.counters.items() if k != "nan_steps_in_a_row"}})
        return m

    # ------------------------------------------------------------------------------------------- loop
    @contextlib.contextmanager
    def _graceful_ctrl_c(self) -> Iterator[None]:
        """The first Ctrl-C lets the current step finish, saves its checkpoint and stops
        (:class:`TrainingInterrupted`); a second one stops at once (``KeyboardInterrupt``; the last
        checkpoint stays, saves being atomic).

        Only for a lone process in the main thread with Python's own handler in place: under a launcher
        (``accelerate launch``) the launcher stops every process itself, and a caller's handler is kept.
        """
        if (self.acc.num_processes > 1 or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return

        def on_ctrl_c(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self._notice("[gpgrl] Ctrl-C: finishing the current step, saving a checkpoint and stopping; Ctrl-C again "
                         "stops at once (the last checkpoint is kept)")

        self._stop_requested = False
        signal.signal(signal.SIGINT, on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _notice(self, text: str) -> None:
        if self.acc.is_main_process:
            self.logger.message(text)

    def train(self, stop_at_step: int | None = None) -> list[dict[str, float]]:
        """Run until ``train.steps`` (or ``stop_at_step``); returns the metrics of each step run.

        Ctrl-C: see :meth:`_graceful_ctrl_c`.
        """
        with self._graceful_ctrl_c():
            return self._train(stop_at_step)

    def _train(self, stop_at_step: int | None) -> list[dict[str, float]]:
        history = []
        cfg = self.cfg
        try:
            while self.step < cfg.train.steps and (stop_at_step is None or self.step < stop_at_step):
                metrics = self.train_step()
                self.step += 1
                metrics["train/step"] = float(self.step)
                history.append(metrics)
                if self.step % cfg.log.log_every == 0 or self.step == cfg.train.steps:
                    self.logger.log(self.step, metrics)
                self.logger.advance(self.step, metrics)
                if cfg.log.sample_every and self.step % cfg.log.sample_every == 0:
                    self.logger.samples(self.step, self._recent[: cfg.log.num_samples_to_show])
                if self.counters["nan_steps_in_a_row"] >= cfg.train.max_nan_steps:
                    raise TrainingError(
                        f"the loss or gradient was not finite for {cfg.train.max_nan_steps} steps in a row "
                        f"(step {self.step}); those updates were skipped and the last good checkpoint is kept. "
                        "Lower optim.lr, keep optim.max_grad_norm set, or check the rewards."
                    )
                saved = bool(cfg.train.save_every and self.step % cfg.train.save_every == 0)
                if saved or (self._stop_requested and self.step < cfg.train.steps):
                    self.save_checkpoint()
                if self._stop_requested and self.step < cfg.train.steps:
                    raise TrainingInterrupted(f"stopped on Ctrl-C after step {self.step}")
                if cfg.train.eval_every and cfg.train.eval_benchmarks and self.step % cfg.train.eval_every == 0:
                    self.logger.log(self.step, self.evaluate())
            done_now = history and self.step == cfg.train.steps
            if done_now and not (cfg.train.save_every and self.step % cfg.train.save_every == 0):
                self.save_checkpoint()
        except BaseException:
            self.close()  # flush what was logged; checkpoints already written stay as they are
            raise
        if self.step >= cfg.train.steps:
            self.close()
        return history

    def close(self) -> None:
        """Flush and close the metric sinks (done by ``train`` once ``train.steps`` is reached).

        ``train(stop_at_step=k)`` leaves them open, so it can be called again to continue.
        """
        self.logger.close()

    def evaluate(self) -> dict[str, float]:
        """Benchmark pass@1 (``train.eval_*``) of the current policy, prompted and sampled as in training.

        Every process evaluates a share of the problems with the rollout engine; benchmarks are loaded
        once and kept. Results (``results.json``, ``samples.jsonl``) go to ``OUTPUT/eval/step-N``.
        """
        from gpgrl.eval import EvalSettings, evaluate
        from gpgrl.rollout.engine import SamplingParams

        t, r = self.cfg.train, self.cfg.rollout
        if self._eval_problems is None:
            self._eval_problems = self._load_eval_problems()
        sampling = SamplingParams(r.max_completion_length, 0.0 if t.eval_samples == 1 else r.temperature, r.top_p,
                                  r.top_k)
        # progress as plain lines on stderr (main process), never a second live bar beside the trainer's
        settings = EvalSettings.of(samples=t.eval_samples, sampling=sampling, prompt=self.prompts.preset,
                                   progress_bar=False, show_table=False, seed=t.seed + self.step,
                                   output_dir=self.output_dir / "eval" / f"step-{self.step:06d}",
                                   model_name=self.cfg.model.name_or_path or None)
        with gathered_for_generation(self.acc, self.model):
            return evaluate(None, self.tokenizer, self._eval_problems, settings, engine=self.engine,
                            accelerator=self.acc)

    def _load_eval_problems(self) -> dict[str, list]:
        from gpgrl.eval import load_benchmarks

        t = self.cfg.train
        return load_benchmarks(t.eval_benchmarks, data_dir=t.eval_data_dir, limit=t.eval_limit,
                               image_dir=t.eval_image_dir or self.cfg.data.image_dir)

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write a checkpoint atomically (see :mod:`gpgrl.train.checkpoint`)."""
        state = {"step": self.step, "sampler": self.sampler.state_dict(), "counters": dict(self.counters),
                 "reward_failure_steps": dict(self.failures.steps)}
        return checkpoint.save(self.acc, self.model, self.tokenizer, self.output_dir, self.step, state,
                               to_yaml(self.cfg), self.cfg.train.save_total_limit)

    def _resume(self) -> None:
        ckpt = checkpoint.latest_checkpoint(self.output_dir)
        if ckpt is None:
            self.acc.print(f"[gpgrl] train.resume is set but {checkpoint.checkpoint_dir(self.output_dir)} has no "
                           "complete checkpoint; starting from step 0 (steps logged before are dropped from "
                           "metrics.jsonl and replayed)")
            return
        checkpoint.check_resumable(ckpt, self.cfg)
        state = checkpoint.load(self.acc, ckpt)
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.counters.update(state["counters"])
        self.failures.steps.update(state.get("reward_failure_steps", {}))
        self.acc.print(f"[gpgrl] resumed from {ckpt} at step {self.step}")


def prompt_budget(cfg: Config, context: int | None) -> int:
    """``data.max_prompt_length``, or its default: the model's context minus ``rollout.max_completion_length``
    (512 when the model does not say its context). Raises ValueError, with the fix, when prompt and answer
    cannot both fit.

    >>> from gpgrl.config import Config
    >>> cfg = Config(); cfg.rollout.max_completion_length = 64
    >>> prompt_budget(cfg, 512), prompt_budget(cfg, None)
    (448, 512)
    """
    limit, answer = cfg.data.max_prompt_length, cfg.rollout.max_completion_length
    if context is None:
        return 512 if limit is None else limit
    if limit is None:
        if answer >= context:
            raise ValueError(f"rollout.max_completion_length={answer} fills the model's whole context of {context} "
                             f"tokens, leaving none for the prompt; lower it (e.g. to {context // 2})")
        return context - answer
    if limit >= context:
        raise ValueError(f"data.max_prompt_length={limit} leaves no room for an answer in the model's context of "
                         f"{context} tokens; lower it to at most {max(context - answer, 1)} (the context minus "
                         "rollout.max_completion_length), or leave it unset for that default")
    return limit


def _get(record: dict[str, Any], column: str) -> Any:
    try:
        return get_field(record, column)
    except KeyError:
        return None

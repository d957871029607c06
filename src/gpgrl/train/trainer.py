"""The training loop: one loop for every objective, on one CPU or many GPUs through Accelerate.

One step, as data (B = prompts_per_step x G answers over all processes)::

    sampler -> P prompts (each process: P / num_processes whole prompts)
    -> engine.generate: G answers per prompt                  RolloutBatch [B_local rows, group by group]
    -> rewards.score_batch (weighted sum; unusable = NaN)      batch.rewards [B_local]
    -> threshold resampling (algorithms.resampling): draw more until the global share of groups
       with a signal >= threshold, keep P_local groups
    -> gather rewards over processes -> objective.advantages  A [B] or [B, T] (statistics: global)
    -> the no-grad log-probs the objective declares (objective.needs: old policy, reference)
    -> per micro-batch: log-probs (and, where the engine reported its own, the trainer's log-probs of the
       engine's sampled distribution -> objective.importance_weights and is/ metrics)
       -> objective.loss(num_tokens = global completion tokens) -> backward
    -> clip grad norm -> optimizer step -> engine.update_weights
       (skipped when objective.skip_step says so (no group carries a signal) or the gradient is not finite)

The trainer orders these steps and names no algorithm: the objective (:mod:`gpgrl.algorithms.objective`,
chosen by the preset or ``algorithm.objective``) holds the maths, in :mod:`gpgrl.algorithms`; the rollout side of a step
(prompts, generation, scoring, resampling) in :mod:`gpgrl.train.rollouts`, reward scoring in
:mod:`gpgrl.rewards.scoring`, sampling in :mod:`gpgrl.rollout`, prompts in :mod:`gpgrl.data.prompts`, the
step's metric bookkeeping in :mod:`gpgrl.train.metrics`, Ctrl-C in :mod:`gpgrl.train.interrupt`.
Settings the run resolves (the steps of ``train.epochs``, the prompt budget) are kept on the trainer
(``total_steps``, ``max_prompt_length``), never written into ``cfg``.
:meth:`Trainer.from_config` builds everything a recipe names; the constructor takes ready objects.

Differences from the original paper's code, on purpose:

* threshold resampling never raises when its draws run out: it trains on what it has, warns once and
  counts it in ``rollout/resample_budget_exhausted``;
* the token-mean loss divides by the completion tokens of the whole global batch (the original
  averages per device), so the gradient does not depend on micro-batching or the number of processes.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed

from gpgrl.algorithms.objective import AdvantageInputs, LossInputs, Objective, StepLogprobs
from gpgrl.config import Config, prompt_budget, to_yaml, total_steps
from gpgrl.data.datasets import check_columns
from gpgrl.data.prompts import PromptBuilder
from gpgrl.models.logprobs import Sampling, completion_logprobs
from gpgrl.models.vision import is_vision_model
from gpgrl.parallel import gathered_for_engine
from gpgrl.rewards.scoring import RewardFunction, as_reward_functions
from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import RolloutEngine, model_context_length
from gpgrl.rollout.episodes import episode_metrics, episode_setup, rollout_rows
from gpgrl.rollout.registry import make_engine
from gpgrl.train import checkpoint
from gpgrl.train.build import build_objective, make_accelerator, make_optimizer, make_scheduler
from gpgrl.train.errors import TrainingError, TrainingInterrupted
from gpgrl.train.interrupt import GracefulStop
from gpgrl.train.logging import MetricsLogger
from gpgrl.train.metrics import ImportanceMeter, LossMeter, perf_metrics, rollout_metrics, slow_reward
from gpgrl.train.rollouts import Rollouts

__all__ = ["Trainer", "TrainingError", "TrainingInterrupted"]


class Trainer:
    """Trains a policy with ``cfg.algorithm`` (its objective: the preset's) on ready-made parts.

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
        tools: the episodes' tools as Python functions (type hints and a docstring with ``Args:``), instead of
            ``rollout.tools``' names (docs/agents.md).
    """

    def __init__(self, cfg: Config, *, model: torch.nn.Module, tokenizer: Any, dataset: Sequence[dict[str, Any]],
                 rewards: Sequence[Any], ref_model: torch.nn.Module | None = None,
                 accelerator: Accelerator | None = None, engine: RolloutEngine | None = None,
                 tools: Sequence[Any] | None = None):
        self.cfg = cfg  # read, never changed: what the run resolves from it is kept here
        self.algo = cfg.algo
        # the algorithm: its needs, advantages and loss, with the importance correction ("auto" resolved by
        # the engine); and the distribution the engine samples from
        self.objective = build_objective(cfg)
        self.importance_mode = self.objective.importance_mode
        self.sampling = Sampling(cfg.rollout.temperature, cfg.rollout.top_k, cfg.rollout.top_p)
        self.acc = accelerator or make_accelerator(cfg)
        set_seed(cfg.train.seed)
        self.output_dir = Path(cfg.train.output_dir)
        world = self.acc.num_processes
        if cfg.train.prompts_per_step % world:
            raise ValueError(f"train.prompts_per_step={cfg.train.prompts_per_step} must be a multiple of the number "
                             f"of processes ({world}) so that every process gets whole groups")
        self.records = list(dataset)
        self.total_steps = total_steps(cfg, len(self.records))  # train.steps, or those of train.epochs
        check_columns(self.records, {"data.prompt_column": cfg.data.prompt_column,
                                     "data.answer_column": cfg.data.answer_column}, cfg.data.dataset or "dataset")
        self.rewards: list[RewardFunction] = as_reward_functions(rewards)
        if self.objective.needs.ref_logprobs and ref_model is None:
            raise ValueError(f"the {self.algo.name} preset has a KL term (beta={self.algo.beta}) and needs ref_model")
        self.tokenizer = tokenizer  # or a vision-language model's processor
        self._vision = is_vision_model(model)  # positions are the model's own (Qwen2-VL's 3-D rotary ones)
        self.max_prompt_length = prompt_budget(cfg, model_context_length(model))
        # what config.yaml and the checkpoints record, and what a resumed run is compared on
        self.run_cfg = cfg.with_resolved(steps=self.total_steps, max_prompt_length=self.max_prompt_length)
        r = cfg.rollout  # multi-turn episodes: tools or an environment (None: one answer per rollout)
        self.episodes = episode_setup(tools=r.tools if tools is None else tools, environment=r.environment,
                                      environment_params=r.environment_params, max_turns=r.max_turns,
                                      tool_timeout=r.tool_timeout, tool_call_format=r.tool_call_format)
        self.prompts = PromptBuilder(tokenizer, cfg.data.prompt_preset(), max_length=self.max_prompt_length,
                                     tools=self.episodes.tools if self.episodes else (),
                                     tool_instructions=self.episodes.tool_instructions if self.episodes else None)
        optimizer = make_optimizer(cfg, model)
        self.model, self.optimizer, self.scheduler = self.acc.prepare(model, optimizer,
                                                                      make_scheduler(cfg, optimizer, self.total_steps))
        self.ref_model = ref_model.to(self.acc.device).eval().requires_grad_(False) if ref_model is not None else None
        self.engine = engine or make_engine(self.run_cfg, self.acc, self.model, tokenizer)  # prompt budget set
        self.counters = {"resample_budget_exhausted": 0, "nan_steps_in_a_row": 0, "prompts_truncated": 0}
        self._warned: set[str] = set()
        self.rollouts = Rollouts(cfg, self.algo, self.acc, model=self.model, engine=self.engine, records=self.records,
                                 prompts=self.prompts, rewards=self.rewards, counters=self.counters, warn=self._warn_once,
                                 episodes=self.episodes)
        self._eval_problems: dict[str, list] | None = None
        if cfg.train.eval_every and cfg.train.eval_benchmarks:  # a misnamed or missing benchmark fails now
            self._eval_problems = self._load_eval_problems()
        # Only now, with every part built and every setting checked, is the output folder touched: with
        # train.overwrite it deletes the previous run, which a bad setting must never cost.
        if self.acc.is_main_process:  # a folder holding another run is never appended to silently
            removed = checkpoint.prepare_output_dir(self.output_dir, resume=cfg.train.resume,
                                                    overwrite=cfg.train.overwrite)
            if removed:  # never deleted without a word
                print(f"[gpgrl] {removed}", file=sys.stderr, flush=True)
        self.acc.wait_for_everyone()
        self.step = 0
        self._recent: list[dict[str, Any]] = []
        self._ctrl_c = GracefulStop(self._notice)
        if cfg.train.resume:
            self._resume()
        self.logger = MetricsLogger(
            self.output_dir, report_to=cfg.log.report_to, enabled=self.acc.is_main_process,
            total_steps=self.total_steps, start_step=self.step, resumed=cfg.train.resume, progress=cfg.log.progress,
            run_name=cfg.log.run_name, wandb_project=cfg.log.wandb_project, config=self.run_cfg.to_dict(),
        )
        self.rollouts.phases = self.logger.phases  # a slow step says what it is doing (main process)
        if self.acc.is_main_process:
            (self.output_dir / "config.yaml").write_text(to_yaml(self.run_cfg))

    @classmethod
    def from_config(cls, cfg: Config, **parts: Any) -> Trainer:
        """Build every part ``cfg`` names (dataset, rewards, tokenizer, model, reference model; see
        :func:`gpgrl.train.build.build_parts`) and the trainer. Any part passed by keyword (``model=``,
        ``tokenizer=``, ``dataset=``, ``rewards=``, ``ref_model=``, ``accelerator=``, ``engine=``) is used
        instead of building it."""
        from gpgrl.train.build import build_parts

        # a folder that cannot take this run is refused before the model loads (read-only; the deletion
        # that train.overwrite asks for waits until every part is built)
        t = cfg.train
        checkpoint.check_output_dir(t.output_dir, resume=t.resume, overwrite=t.overwrite)
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

    # ------------------------------------------------------------------------------------------- step
    def train_step(self) -> dict[str, float]:
        """One rollout batch and (normally) one optimizer update; returns the step's metrics."""
        t0 = time.perf_counter()
        self.logger.phases.begin(self.step + 1)
        batch, metrics = self.rollouts.collect()  # drawn, scored and resampled: P_local groups on each process
        self.rollouts.check_rewards(self.step + 1)
        t_rollout = time.perf_counter() - t0
        batch = batch.to(self.acc.device)
        global_r = self.acc.gather(batch.rewards)  # [B] float64, rank order = group order
        # the policy's tokens of the global batch (an episode's tool / environment tokens are not counted)
        num_tokens = int(self.acc.reduce(batch.action_mask.sum(), reduction="sum"))
        logprobs = self._declared_logprobs(batch)
        adv, stats = self._advantages(global_r, metrics["rollout/valid_groups_counted"], len(batch), logprobs)
        metrics.update(self._rollout_metrics(batch, global_r, stats, num_tokens))
        per_answer = _per_answer(adv, batch.action_mask).tolist()
        self._recent = [{"prompt": p, "completion": t, "reward": float(r), "advantage": float(a)}
                        for p, t, r, a in zip(batch.prompts, batch.texts, batch.rewards.tolist(), per_answer)]
        if self.cfg.saves_rollouts:
            self._save_rollouts(batch, per_answer)
        if self.objective.skip_step(stats):  # the no-signal rule (else step on zero advantages, as the original)
            self.optimizer.zero_grad(set_to_none=True)
            self._scheduler_step()
            metrics.update({"optim/skipped": 1.0, "optim/lr": self.scheduler.get_last_lr()[0]})
            metrics.update(self._importance_metrics_only(batch))  # the gap is measured on every step
        else:
            self.logger.phases(f"updating ({len(self._micro_batches(batch))} micro-batches)")
            self.engine.sleep()  # frees a colocated engine's memory for the update
            metrics.update(self._update(batch, adv, num_tokens, int(global_r.numel()), self.objective.for_step(stats),
                                        logprobs))
            self.engine.update_weights(self.model)  # wakes the engine: weights first, then its KV cache
        step_seconds = time.perf_counter() - t0
        metrics.update(perf_metrics(t_rollout, self.rollouts.reward_seconds, step_seconds, num_tokens))
        slow = slow_reward(self.rollouts.reward_seconds, step_seconds)
        if slow:
            self._warn_once("slow_reward", slow)
        return metrics

    def _advantages(self, global_r: torch.Tensor, valid_groups_counted: float, num_local: int,
                    logprobs: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        """This process's ``num_local`` advantages ([N], or [N, T] per token) and the global batch's statistics
        (alpha, degenerate groups), as the objective computes them from the gathered rewards."""
        rank = self.acc.process_index
        inputs = AdvantageInputs(
            rewards=global_r, group_size=self.cfg.rollout.group_size, rows=slice(rank * num_local, (rank + 1) * num_local),
            prompts_per_step=self.cfg.train.prompts_per_step, valid_groups_counted=valid_groups_counted,
            logprobs=logprobs, reduce_sum=lambda t: self.acc.reduce(t, reduction="sum"))
        adv, stats = self.objective.advantages(inputs)
        return adv.to(self.acc.device), stats

    def _declared_logprobs(self, batch: RolloutBatch) -> Any:
        """A function giving the step's no-grad log-probs the objective declared (the policy's before the
        update, the reference's), per micro-batch; they are computed on its first call only."""
        kept: list[StepLogprobs] = []

        def get() -> StepLogprobs:
            if not kept:
                needs, slices = self.objective.needs, self._micro_batches(batch)
                with torch.no_grad():
                    old = [self._logp(self.model, batch, sl, False)[0] if needs.old_logprobs else None for sl in slices]
                    ref = [self._logp(self.ref_model, batch, sl, False)[0]
                           if needs.ref_logprobs and self.ref_model is not None else None for sl in slices]
                kept.append(StepLogprobs(old=old, ref=ref, mask=[batch.action_mask[sl] for sl in slices]))
            return kept[0]
        return get

    def _scheduler_step(self) -> None:
        """Advance the schedule once per step, also when the update was skipped (the schedule follows steps)."""
        with warnings.catch_warnings():  # a skipped optimizer step makes torch warn about the call order
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()

    def _logp(self, model: torch.nn.Module, batch: RolloutBatch, sl: slice, with_entropy: bool,
              sampling: Sampling | None = None):
        """The loss's log-probs (and entropy) of ``batch[sl]``; with ``sampling``, also the engine's sampled
        distribution's log-probs of the same tokens, from the same forward pass (see ``completion_logprobs``)."""
        return completion_logprobs(model, batch.prompt_ids[sl], batch.prompt_mask[sl], batch.completion_ids[sl],
                                   batch.completion_mask[sl], with_entropy=with_entropy,
                                   model_inputs=batch.model_inputs_for(sl), use_position_ids=not self._vision,
                                   share_prompts=True,  # a group's prompt runs once (where exact; see the function)
                                   # the distribution sampled from, or the untempered one (the preset's choice)
                                   temperature=self.cfg.rollout.temperature if self.algo.tempered_logprobs else 1.0,
                                   sampling=sampling)

    def _importance(self, proc_logp: torch.Tensor, batch: RolloutBatch,
                    sl: slice) -> tuple[torch.Tensor | None, dict]:
        """Importance weights [n, T] of ``batch[sl]`` (None when the correction is off) and their statistics:
        the trainer's log-probs of the engine's sampled distribution (``proc_logp``) against the engine's own."""
        return self.objective.importance_weights(proc_logp, batch.sampling_logprobs[sl], batch.action_mask[sl])

    def _importance_metrics_only(self, batch: RolloutBatch) -> dict[str, float]:
        """``is/*`` of a step that runs no update: a no-grad forward pass for them alone, only when the engine
        reported its sampling log-probs (every process takes this branch together: the rewards are global)."""
        if batch.sampling_logprobs is None:
            return {}
        meter = ImportanceMeter()
        with torch.no_grad():
            for sl in self._micro_batches(batch):
                meter.add(self._importance(self._logp(self.model, batch, sl, False, self.sampling)[2], batch, sl)[1])
        return meter.result(self.acc.gather, device=self.acc.device)

    def _micro_batches(self, batch: RolloutBatch) -> list[slice]:
        """``batch``'s rows, ``train.micro_batch_size`` at a time."""
        mbs = self.cfg.train.micro_batch_size
        return [slice(i, min(i + mbs, len(batch))) for i in range(0, len(batch), mbs)]

    def _update(self, batch: RolloutBatch, adv: torch.Tensor, num_tokens: int, num_sequences: int,
                objective: Objective | None = None, logprobs: Any = None) -> dict[str, float]:
        """Micro-batched forward/backward of the objective's loss, then one optimizer step per iteration.

        Whatever the objective's loss reports is logged under ``loss/`` (:class:`~gpgrl.train.metrics.LossMeter`:
        per-token metrics such as ``kl``, ``clip_frac_*`` averaged over the global batch's tokens). The
        log-probs it declared (:attr:`Objective.needs`) come from ``logprobs`` (computed here unless the
        advantages already needed them). Where the engine reported its sampling log-probs, the first
        iteration's forward pass also gives the trainer's log-probs of the same distribution: the importance
        weights (kept for later iterations, as they correct the sampling policy, which the PPO ratio of
        iterations > 1 does not) go to the loss unless the correction is off, and their statistics are logged
        under ``is/`` (:class:`~gpgrl.train.metrics.ImportanceMeter`).
        """
        objective = objective or self.objective
        world, slices = self.acc.num_processes, self._micro_batches(batch)
        declared = (logprobs or self._declared_logprobs(batch))()
        sampling = self.sampling if batch.sampling_logprobs is not None else None
        weights: list[torch.Tensor | None] = [None] * len(slices)
        meter, is_meter, grad_norm, skipped = LossMeter(), ImportanceMeter(), float("nan"), 0.0
        iterations = self.algo.num_iterations
        for it in range(iterations):
            for k, sl in enumerate(slices):
                sync = contextlib.nullcontext() if k == len(slices) - 1 else self.acc.no_sync(self.model)
                with sync:
                    logp, entropy, *proc = self._logp(self.model, batch, sl, with_entropy=True,
                                                      sampling=sampling if it == 0 else None)
                    mask = batch.action_mask[sl]  # the policy's own tokens (not a tool's)
                    if proc:  # the trainer's log-probs of the engine's sampled distribution, no gradient
                        weights[k], stats = self._importance(proc[0], batch, sl)
                        is_meter.add(stats)
                    loss, m = objective.loss(LossInputs(
                        logp=logp, mask=mask, advantages=adv[sl], num_tokens=num_tokens, num_sequences=num_sequences,
                        max_completion_length=self.cfg.rollout.max_completion_length, old_logp=declared.old[k],
                        ref_logp=declared.ref[k], weights=weights[k]))
                    # DDP averages gradients over processes; each piece is already a share of the global
                    # loss, so multiply by the world size to sum them instead.
                    self.acc.backward(loss * world)
                m = {"num_tokens": float(mask.sum()), "pg_loss": float(loss.detach()), **m}  # where it reports none
                meter.add(loss, m, entropy_sum=float((entropy * mask).sum()))
            grad_norm, skipped = self._optimizer_step(skipped)
        self._scheduler_step()
        out = meter.result(lambda t: self.acc.reduce(t, reduction="sum"), num_tokens=num_tokens,
                           iterations=iterations, device=self.acc.device)
        if sampling is not None:
            out.update(is_meter.result(self.acc.gather, device=self.acc.device))
        out.update({"optim/grad_norm": grad_norm, "optim/lr": self.scheduler.get_last_lr()[0], "optim/skipped": skipped})
        if skipped:
            self._warn_once("nan", "a step had a non-finite loss or gradient and was skipped (optim/skipped)")
        return out

    def _optimizer_step(self, skipped: float) -> tuple[float, float]:
        """Clip the gradient and step, unless its norm is not finite (then count it); ``(grad_norm, skipped)``."""
        max_norm = self.cfg.optim.max_grad_norm
        grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(), max_norm if max_norm else float("inf")))
        if math.isfinite(grad_norm):
            self.optimizer.step()
            self.counters["nan_steps_in_a_row"] = 0
        else:
            self.counters["nan_steps_in_a_row"] += 1
            skipped = 1.0
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, skipped

    def _save_rollouts(self, batch: RolloutBatch, advantages: list[float]) -> None:
        """Append the step's trained rows (every process's) to ``rollouts.jsonl`` (``log.save_rollouts``)."""
        rows = rollout_rows(batch, advantages, self.step + 1, self.acc.process_index)
        everyone = gather_object(rows) if self.acc.num_processes > 1 else rows
        if self.acc.is_main_process:
            with open(self.output_dir / "rollouts.jsonl", "a") as f:
                f.writelines(json.dumps(row) + "\n" for row in everyone)

    def _rollout_metrics(self, batch: RolloutBatch, global_r: torch.Tensor, stats: dict[str, float],
                         num_tokens: int) -> dict[str, float]:
        if batch.episodes:  # every process's episodes, and the share of their tokens the environment wrote
            infos = gather_object(list(batch.episodes)) if self.acc.num_processes > 1 else list(batch.episodes)
            all_tokens = int(self.acc.reduce(batch.completion_mask.sum(), reduction="sum"))
            episode = episode_metrics(infos, float(num_tokens), float(all_tokens))
        m = rollout_metrics(self.acc.gather(batch.lengths.float()), self.acc.gather(batch.truncated.float()),
                            self.acc.gather(batch.rewards_per_fn), [r.name for r in self.rewards], global_r, stats)
        m.update({"rollout/num_tokens": float(num_tokens), "train/epoch": float(self.rollouts.sampler.epoch),
                  **{f"rollout/{k}": float(v) for k, v in self.counters.items() if k != "nan_steps_in_a_row"}})
        if batch.episodes:
            m.update(episode)
        return m

    # ------------------------------------------------------------------------------------------- loop
    def _notice(self, text: str) -> None:
        if self.acc.is_main_process:
            self.logger.message(text)

    def train(self, stop_at_step: int | None = None) -> list[dict[str, float]]:
        """Run until ``total_steps`` (``train.steps``, or those of ``train.epochs``) or ``stop_at_step``;
        returns the metrics of each step run.

        Ctrl-C: see :class:`~gpgrl.train.interrupt.GracefulStop`.
        """
        with self._ctrl_c.installed(self.acc.num_processes):
            return self._train(stop_at_step)

    def _train(self, stop_at_step: int | None) -> list[dict[str, float]]:
        history = []
        cfg = self.cfg
        try:
            while self.step < self.total_steps and (stop_at_step is None or self.step < stop_at_step):
                metrics = self.train_step()
                self.step += 1
                metrics["train/step"] = float(self.step)
                history.append(metrics)
                if self.step % cfg.log.log_every == 0 or self.step == self.total_steps:
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
                if saved or (self._ctrl_c.requested and self.step < self.total_steps):
                    self.save_checkpoint()
                if self._ctrl_c.requested and self.step < self.total_steps:
                    raise TrainingInterrupted(f"stopped on Ctrl-C after step {self.step}")
                if cfg.train.eval_every and cfg.train.eval_benchmarks and self.step % cfg.train.eval_every == 0:
                    self.logger.log(self.step, self.evaluate())
            done_now = history and self.step == self.total_steps
            if done_now and not (cfg.train.save_every and self.step % cfg.train.save_every == 0):
                self.save_checkpoint()
        except BaseException:
            self.close()  # flush what was logged; checkpoints already written stay as they are
            raise
        if self.step >= self.total_steps:
            self.close()
        return history

    def close(self) -> None:
        """Flush and close the metric sinks (done by ``train`` once ``total_steps`` is reached).

        ``train(stop_at_step=k)`` leaves them open, so it can be called again to continue.
        """
        self.logger.close()
        if self.episodes is not None:
            self.episodes.close()  # the tools' worker processes

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
                                   budget_from="rollout.max_completion_length",
                                   progress_bar=False, show_table=False, seed=t.seed + self.step,
                                   output_dir=self.output_dir / "eval" / f"step-{self.step:06d}",
                                   model_name=self.cfg.model.name_or_path or None, episodes=self.episodes)
        with gathered_for_engine(self.acc, self.model, self.engine):
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
        state = {"step": self.step, "sampler": self.rollouts.sampler.state_dict(), "counters": dict(self.counters),
                 "reward_failure_steps": dict(self.rollouts.failures.steps)}
        return checkpoint.save(self.acc, self.model, self.tokenizer, self.output_dir, self.step, state,
                               to_yaml(self.run_cfg), self.cfg.train.save_total_limit)

    def _resume(self) -> None:
        ckpt = checkpoint.latest_checkpoint(self.output_dir)
        if ckpt is None:
            self.acc.print(f"[gpgrl] train.resume is set but {checkpoint.checkpoint_dir(self.output_dir)} has no "
                           "complete checkpoint; starting from step 0 (steps logged before are dropped from "
                           "metrics.jsonl and replayed)")
            return
        checkpoint.check_resumable(ckpt, self.run_cfg)
        state = checkpoint.load(self.acc, ckpt)
        self.step = int(state["step"])
        self.rollouts.sampler.load_state_dict(state["sampler"])
        self.counters.update(state["counters"])
        self.rollouts.failures.steps.update(state.get("reward_failure_steps", {}))
        # the engine is part of the state: one that holds its own weights (vLLM) started from the base
        # model, so the first rollout after a resume would sample from another policy than the checkpoint's
        self.engine.update_weights(self.model)
        self.acc.print(f"[gpgrl] resumed from {ckpt} at step {self.step}")



def _per_answer(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One advantage per answer for the logged samples: as given, or a per-token one's mean over the answer."""
    if adv.dim() == 1:
        return adv
    m = mask.to(adv.dtype)
    return (adv * m).sum(1) / m.sum(1).clamp(min=1)

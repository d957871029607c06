"""Metric sinks (JSONL, TensorBoard, wandb), the console progress and sample tables. Main process only.

In a terminal the console shows a progress bar with a few key metrics; outside one (CI, ``nohup``, a
log file) it prints one plain line per logged step instead, which reads well in a file. A resumed run
first drops the rows of ``metrics.jsonl`` and ``samples.jsonl`` logged after its checkpoint's step (a
run killed between a log line and the next checkpoint would otherwise log those steps twice).

A slow step (a real model on a CPU: a minute or two) also says what it is doing (:class:`StepPhases`):
outside a terminal a line as each phase starts, and while the answers are generated a line every ~10 s::

    step 3/20: generating 16 answers to 2 prompts ...
    step 3/20: generating: 5/16 answers done, 1,840 tokens (41 tokens/s)
    step 3/20: scoring 16 answers ...
    step 3/20: updating (2 micro-batches) ...
    step 3/20  reward 0.25  ...

only for the first step of a run and after a step that took more than :data:`PHASE_LINES_AFTER` seconds
(``MetricsLogger.phases.after``), so a fast run prints its step lines alone; in a terminal the phase shows
in the progress bar instead. (The lines around loading a model: :func:`gpgrl.models.progress.model_loading`.)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# The metrics shown on the progress bar / plain lines, with their short labels.
BAR_METRICS = {"reward/mean": "reward", "reward/sampled_mean": "sampled", "adv/alpha": "alpha",
               "adv/frac_degenerate_groups": "degen", "rollout/completion_length": "len", "loss/entropy": "H",
               "perf/step_seconds": "s/step"}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def truncate_jsonl(path: Path, last_step: int) -> int:
    """Drop the rows of a ``{"step": ...}`` JSON-lines file whose step is past ``last_step`` (atomically).

    Returns the number of rows dropped. Lines that are not JSON (a line cut by a kill) are dropped too.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step", 0)
        except (json.JSONDecodeError, AttributeError):
            dropped += 1
            continue
        if isinstance(step, (int, float)) and step > last_step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
    return dropped


def format_line(step: int, total: int, metrics: dict[str, float]) -> str:
    """One plain progress line.

    >>> format_line(3, 10, {"reward/mean": 0.5, "adv/alpha": 2.0, "other": 1.0})
    'step 3/10  reward 0.5  alpha 2'
    """
    stats = "  ".join(f"{label} {metrics[k]:.3g}" for k, label in BAR_METRICS.items()
                      if isinstance(metrics.get(k), (int, float)))
    return f"step {step}/{total}  {stats}".rstrip()


#: A step that took longer than this (seconds) makes the next one say what it is doing, phase by phase.
PHASE_LINES_AFTER = 5.0


class StepPhases:
    """What a training step is doing while the user waits (main process; the trainer and
    :class:`~gpgrl.train.rollouts.Rollouts` only call it).

    :meth:`begin` starts step ``step``, :meth:`draw` each further threshold-resampling draw; calling the
    object (``phases("scoring 16 answers")``) says a phase starts; :meth:`generating` watches the engine
    while it writes the answers. Phases are shown for the first step of a run and after a step that took
    more than ``after`` seconds (``last_seconds``, set by :meth:`MetricsLogger.advance`), and a further draw's
    only when the one before it took that long: as plain lines (``lines``, outside a terminal), the
    engine's progress every ``interval`` seconds, and in a terminal's progress bar (``bar``: a function
    given the phase's text).
    """

    def __init__(self, total_steps: int, *, lines: bool = False, bar: Callable[[str], None] | None = None,
                 after: float = PHASE_LINES_AFTER, interval: float = 10.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total_steps, self.lines, self.bar, self.after, self.interval = total_steps, lines, bar, after, interval
        self.stream, self.clock = stream, clock
        self.step = 0
        self.on = False
        self.last_seconds: float | None = None  # the previous step's seconds; None before the run's first step
        self._draw_start = 0.0

    def begin(self, step: int) -> None:
        """Step ``step`` (1-based) starts: its phases are shown if it is the run's first or the last was slow."""
        self.step, self._draw_start = step, self.clock()
        self.on = (self.lines or self.bar is not None) and (self.last_seconds is None or self.last_seconds > self.after)

    def draw(self) -> None:
        """A further draw of prompts (threshold resampling) starts: its phases are shown if the last draw was
        slow (twenty fast draws are not forty lines)."""
        now = self.clock()
        self.on = (self.lines or self.bar is not None) and now - self._draw_start > self.after
        self._draw_start = now

    def _print(self, text: str) -> None:
        print(f"step {self.step}/{self.total_steps}: {text}", file=self.stream or sys.stderr, flush=True)

    def __call__(self, text: str) -> None:
        """A phase of the current step starts (``generating 16 answers to 2 prompts``)."""
        if not self.on:
            return
        if self.bar is not None:
            self.bar(text)
        if self.lines:
            self._print(f"{text} ...")

    @contextlib.contextmanager
    def generating(self, engine: Any, rows: int, *, share: bool = False) -> Iterator[None]:
        """While ``engine`` writes ``rows`` answers (``share``: this process's share of the step's): the
        answers done, the tokens written and their rate, every ``interval`` seconds (through the engine's
        ``on_step`` / ``on_done``, where it reports them)."""
        if not self.on:
            yield
            return
        start = last = self.clock()
        count = {"tokens": 0, "done": 0}

        def show(force: bool = False) -> None:
            nonlocal last
            now = self.clock()
            if not force and now - last < self.interval:
                return
            last = now
            rate = f" ({count['tokens'] / (now - start):.0f} tokens/s)" if now > start else ""
            mine = " on this process" if share else ""
            text = f"generating: {count['done']}/{rows} answers done{mine}, {count['tokens']:,} tokens{rate}"
            if self.bar is not None:
                self.bar(text)
            if self.lines:
                self._print(text)

        def on_step(new_tokens: int, step: int, max_steps: int) -> None:
            count["tokens"] += new_tokens
            show()

        def on_done(ended: list[int]) -> None:
            count["done"] += len(ended)

        before = getattr(engine, "on_step", None), getattr(engine, "on_done", None)
        engine.on_step, engine.on_done = on_step, on_done
        try:
            yield
        finally:
            engine.on_step, engine.on_done = before


class MetricsLogger:
    """Writes each step's metrics to ``metrics.jsonl`` and the configured sinks; shows progress."""

    def __init__(self, output_dir: str | Path, *, report_to: list[str], enabled: bool, total_steps: int,
                 start_step: int = 0, resumed: bool = False, progress: bool | None = None,
                 run_name: str | None = None, wandb_project: str = "gpgrl", config: dict[str, Any] | None = None):
        self.enabled = enabled
        self.phases = StepPhases(total_steps)  # off until the console is set up below (main process only)
        self.console = Console(stderr=True)
        self.output_dir = Path(output_dir)
        self.total_steps = total_steps
        self._jsonl = None
        self._tb = None
        self._wandb = None
        self._progress: Progress | None = None
        self._plain = False
        if not enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if start_step > 0 or resumed:  # what was logged after the checkpoint is replayed by this run (from
            for name in ("metrics.jsonl", "samples.jsonl"):  # step 0 when no checkpoint was complete)
                truncate_jsonl(self.output_dir / name, start_step)
        if "jsonl" in report_to:
            self._jsonl = open(self.output_dir / "metrics.jsonl", "a")  # append: a resumed run continues the file
        if "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"), purge_step=start_step + 1
                                         if start_step or resumed else None)
            except ImportError:
                self.console.print("[yellow]tensorboard is not installed; TensorBoard logging is off[/]",
                                   soft_wrap=True)
        if "wandb" in report_to:
            import wandb

            self._wandb = wandb.init(project=wandb_project, name=run_name, config=config, resume="allow")
        if progress is None:
            progress = sys.stderr.isatty()
            self._plain = not progress
        if progress:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), console=self.console, transient=False,
            )
            self._task = self._progress.add_task("train", total=total_steps, completed=start_step, stats="")
            self._progress.start()
        self.phases = StepPhases(total_steps, lines=self._plain, bar=self._bar_phase if self._progress else None)

    def _bar_phase(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, stats=text)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one step's metrics to every sink (and a plain console line outside a terminal)."""
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, **{k: _clean(v) for k, v in metrics.items()}}) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)
        if self._plain:
            print(format_line(step, self.total_steps, metrics), file=sys.stderr, flush=True)

    def advance(self, step: int, metrics: dict[str, float]) -> None:
        """Move the progress bar (terminal only); the step's seconds decide whether the next one shows its
        phases (:class:`StepPhases`)."""
        seconds = metrics.get("perf/step_seconds")
        if isinstance(seconds, (int, float)):
            self.phases.last_seconds = float(seconds)
        if self._progress is None:
            return
        stats = format_line(step, self.total_steps, metrics).split("  ", 1)[-1]
        self._progress.update(self._task, completed=step, stats=stats)

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        """Print a table of sample completions and append them to ``samples.jsonl``."""
        if not self.enabled or not rows:
            return
        with open(self.output_dir / "samples.jsonl", "a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **{k: _clean(v) for k, v in row.items()}}) + "\n")
        table = Table(title=f"samples at step {step}", show_lines=True)
        for col in ("prompt", "completion", "reward", "advantage"):
            table.add_column(col, overflow="fold", max_width=60 if col in ("prompt", "completion") else 10)
        for row in rows:
            table.add_row(row["prompt"][-200:], row["completion"][:400], f"{row['reward']:.3g}", f"{row['advantage']:.3g}")
        self.console.print(table)

    def message(self, text: str) -> None:
        """A notice for the user (warnings, resume), printed above the progress bar on one line: never
        wrapped (outside a terminal rich would wrap it at 80 columns; a terminal wraps long lines itself)."""
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Close every sink; safe to call twice."""
        if self._progress is not None:
            self._progress.stop()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._progress = self._jsonl = self._tb = self._wandb = None

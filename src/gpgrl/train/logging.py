"""Metric sinks (JSONL, TensorBoard, wandb), the console progress and sample tables. Main process only.

In a terminal the console shows a progress bar with a few key metrics; outside one (CI, ``nohup``, a
log file) it prints one plain line per logged step instead, which reads well in a file. A resumed run
first drops the rows of ``metrics.jsonl`` and ``samples.jsonl`` logged after its checkpoint's step (a
run killed between a log line and the next checkpoint would otherwise log those steps twice).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

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


class MetricsLogger:
    """Writes each step's metrics to ``metrics.jsonl`` and the configured sinks; shows progress."""

    def __init__(self, output_dir: str | Path, *, report_to: list[str], enabled: bool, total_steps: int,
                 start_step: int = 0, resumed: bool = False, progress: bool | None = None,
                 run_name: str | None = None, wandb_project: str = "gpgrl", config: dict[str, Any] | None = None):
        self.enabled = enabled
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
        """Move the progress bar (terminal only)."""
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

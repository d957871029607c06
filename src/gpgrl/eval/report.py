"""An evaluation's report: progress while it runs, the partial file an interrupted run continues from,
``results.json`` / ``samples.jsonl`` and the console table at the end.

Progress goes to stderr on the main process: a rich bar on a terminal, plain lines elsewhere (logs, CI),
the first within seconds of the start, then every ~10 s and whenever a problem's answers are done; the time
left is measured from the problems done::

    eval: 3/8 problems, 2,140 tokens (61 tokens/s), ~1m 25s left
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from gpgrl.eval.metrics import summarize


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[Any]:
    """Write ``path`` through a temporary file in the same folder and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_outputs(
    output_dir: str | Path, metrics: dict[str, float], records: list[dict[str, Any]], config: dict[str, Any]
) -> tuple[Path, Path]:
    """``results.json`` (metrics, per-benchmark summary, config) and ``samples.jsonl`` (one row per sample)."""
    out = Path(output_dir)
    results = {"metrics": metrics, "per_benchmark": summarize(records), "config": config}
    with atomic_open(out / "results.json") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with atomic_open(out / "samples.jsonl") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return out / "results.json", out / "samples.jsonl"


#: The rows of an evaluation in progress, in its output folder (deleted once results.json is written).
PARTIAL_FILE = "samples.partial.jsonl"
#: Settings that may differ between an interrupted evaluation and the run that continues it.
_RUN_ONLY = ("batch_size", "num_processes", "timestamp")


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two evaluations the same one: their config, JSON-normalised, without run-only settings,
    and for a local model the names, sizes and times of its files (a folder saved over is another model)."""
    identity = {k: v for k, v in config.items() if k not in _RUN_ONLY}
    model = Path(str(config.get("model") or "")).expanduser()
    if config.get("model") and model.exists():
        files = sorted(model.iterdir()) if model.is_dir() else [model]
        identity["model_files"] = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]
    return json.loads(json.dumps(identity, default=str))


def _finished(partial: Path, config: dict[str, Any], samples: int) -> list[dict[str, Any]]:
    """The rows of problems that an earlier run of the same evaluation finished (all ``samples`` of them);
    none when the file is missing or belongs to another evaluation. A line cut by a kill is skipped."""
    if not partial.is_file():
        return []
    lines = partial.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("evaluation") != _identity(config):
        return []
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows.setdefault((row["benchmark"], row["problem_index"]), []).append(row)
    return [r for group in rows.values() if len(group) == samples for r in group]


def _start_partial(partial: Path, config: dict[str, Any], done: list[dict[str, Any]]) -> None:
    """Rewrite the partial file with its header and the rows kept (atomically)."""
    with atomic_open(partial) as f:
        f.write(json.dumps({"evaluation": _identity(config)}, ensure_ascii=False) + "\n")
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in done)


def render_table(records: list[dict[str, Any]], title: str = "gpgrl eval") -> Any:
    """A rich Table: one row per benchmark plus the average."""
    from rich.table import Table

    summary = summarize(records)
    k = max((int(row["samples"]) for row in summary.values()), default=1)
    table = Table(title=title)
    table.add_column("benchmark")
    grounding = [name for name in ("gIoU", "cIoU") if any(name in row for row in summary.values())]
    for name in (
        ["problems", "pass@1", f"maj@{k}"] + ([f"pass@{k}"] if k > 1 else []) + grounding + ["mean len", "truncated"]
    ):
        table.add_column(name, justify="right")

    def row_cells(row: dict[str, float]) -> list[str]:
        cells = [f"{int(row['problems'])}", f"{100 * row['pass@1']:.1f}", f"{100 * row[f'maj@{k}']:.1f}"]
        if k > 1:
            cells.append(f"{100 * row[f'pass@{k}']:.1f}")
        cells += [f"{100 * row[name]:.1f}" if name in row else "-" for name in grounding]
        return [*cells, f"{row['mean_length']:.0f}", f"{100 * row['truncation_rate']:.1f}%"]

    for bench, row in summary.items():
        table.add_row(bench, *row_cells(row))
    if len(summary) > 1:
        avg = {
            name: sum(r[name] for r in summary.values()) / len(summary)
            for name in next(iter(summary.values()))
            if all(name in r for r in summary.values())
        }
        avg["problems"] = sum(r["problems"] for r in summary.values())
        table.add_row("avg", *row_cells(avg), style="bold")
    return table


def _duration(seconds: float) -> str:
    """``1h 02m``, ``3m 05s``, ``42s``.

    >>> _duration(3725), _duration(185), _duration(41.6)
    ('1h 02m', '3m 05s', '42s')
    """
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Problems done out of ``total``, tokens per second and the time left, while an evaluation runs.

    The evaluator says when a generate call starts (:meth:`begin_batch`) and ends (:meth:`batch_done`);
    the engine, where it can, reports each decoding step (:attr:`gpgrl.rollout.RolloutEngine.on_step`:
    :meth:`step`) and each answer as it ends (:attr:`~gpgrl.rollout.RolloutEngine.on_done`:
    :meth:`answers_ended`), so the count moves within a call: a problem is done when its ``samples``
    answers have ended. ``bar``: a rich bar (None: when ``stream`` is a terminal); otherwise a plain line
    ``first_after`` seconds in, then every ``interval`` seconds and whenever the count moves (at most one a
    second); ``clock`` gives the time in seconds.

    The time left is measured, never guessed: the seconds so far per problem done, times the problems
    left; it appears once a problem is done. Problems whose answers end early finish first, so while a
    batch still holds long answers it reads low.
    """

    def __init__(self, total: int, samples: int = 1, *, enabled: bool = True, bar: bool | None = None,
                 stream: TextIO | None = None, interval: float = 10.0, label: str = "eval", first_after: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.samples, self.enabled, self.label = total, max(samples, 1), enabled, label
        self.interval, self.first_after, self.clock = interval, first_after, clock
        self.stream = stream if stream is not None else sys.stderr
        self.bar = (self.stream.isatty() if bar is None else bar) and enabled
        self.done = self.finished_tokens = self.pending_tokens = 0
        self._ended: list[int] = []  # answers ended so far, per problem of the current batch
        self._counted = 0  # problems of the current batch already counted in ``done``
        self.start = self.last = clock()
        self._shown = ""  # the last line printed
        self._rich: Any = None

    def __enter__(self) -> Progress:
        self.start = self.last = self.clock()
        if self.bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn(f"[bold]{self.label}[/bold] problems"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      console=Console(file=self.stream))
            self._rich.__enter__()
            self._task = self._rich.add_task("", total=self.total, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)

    @property
    def tokens(self) -> int:
        """Tokens written so far: finished batches' answers, and the current batch's as reported."""
        return self.finished_tokens + self.pending_tokens

    def line(self) -> str:
        """The progress now, in words."""
        elapsed = self.clock() - self.start
        rate = f" ({self.tokens / elapsed:.0f} tokens/s)" if elapsed > 0 and self.tokens else ""
        left = f", ~{_duration(elapsed * (self.total - self.done) / self.done)} left" \
            if 0 < self.done < self.total else ""  # from the problems done: none before the first
        return f"{self.label}: {self.done}/{self.total} problems, {self.tokens:,} tokens{rate}{left}"

    def begin_batch(self, problems: int) -> None:
        """A generate call for ``problems`` problems (``samples`` answers each, problem by problem) starts."""
        self._ended, self._counted = [0] * problems, 0

    def step(self, new_tokens: int, step: int, max_steps: int) -> None:
        """One decoding step of the current batch: ``new_tokens`` written, step ``step`` of at most ``max_steps``."""
        self.pending_tokens += new_tokens
        self._show(force=False)

    def answers_ended(self, rows: list[int]) -> None:
        """The answers in ``rows`` (indices among the current call's rows) have ended."""
        before = self._counted
        for row in rows:
            problem = row // self.samples
            if problem < len(self._ended):
                self._ended[problem] += 1
                if self._ended[problem] == self.samples:
                    self._counted += 1
        if self._counted > before:
            self.done += self._counted - before
            self._show(force=True)

    def batch_done(self, problems: int, tokens: int) -> None:
        """A batch of ``problems`` finished, its answers ``tokens`` long in all."""
        news = problems > self._counted or tokens != self.pending_tokens  # else its last answer said it all
        self.done += max(problems - self._counted, 0)
        self._ended, self._counted = [], 0
        self.finished_tokens += tokens
        self.pending_tokens = 0
        self._show(force=news)

    def _show(self, force: bool) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._rich is not None:
            info = self.line().split("problems, ", 1)[-1]
            self._rich.update(self._task, completed=self.done, info=info)
            return
        if now - self.start < self.first_after and not (force and self.done == self.total):
            return  # a run over in seconds prints its last line only
        first = not self._shown
        if first or now - self.last >= (min(1.0, self.interval) if force else self.interval) or \
                (force and self.done == self.total):
            line = self.line()
            if line != self._shown:  # the last answer ending, then its call: one line
                self.last, self._shown = now, line
                print(line, file=self.stream, flush=True)


class PartialFile:
    """``OUTPUT/samples.partial.jsonl``: every finished batch's rows, appended, under a header naming the
    evaluation, so that an interrupted evaluation keeps them and the same command continues from them."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / PARTIAL_FILE

    def resume(self, config: dict[str, Any], samples: int) -> list[dict[str, Any]]:
        """The rows an earlier run of this evaluation finished (the file is rewritten with them only)."""
        done = _finished(self.path, config, samples)
        _start_partial(self.path, config, done)
        return done

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def report(records: list[dict[str, Any]], metrics: dict[str, float], config: dict[str, Any],
           output_dir: str | Path | None, show_table: bool) -> None:
    """The end of an evaluation (main process): the files, then the table on the console."""
    from datetime import datetime, timezone

    config["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if output_dir is not None:
        write_outputs(output_dir, metrics, records, config)
        PartialFile(output_dir).remove()  # samples.jsonl now holds every row
    if show_table:
        from rich.console import Console

        Console().print(render_table(records, title=f"gpgrl eval: {config['model']}"))
        note = truncation_note(records, config["sampling"]["max_new_tokens"])
        if note:
            print(note, file=sys.stderr, flush=True)


#: The share of a benchmark's answers cut at the budget above which the table is followed by a note.
TRUNCATION_NOTE_AT = 0.2


def truncation_note(records: list[dict[str, Any]], budget: int) -> str | None:
    """A line saying which benchmarks had many answers cut at the token budget (graded as they stand), or None.

    >>> rows = [{"benchmark": "gsm8k", "problem_index": i, "sample_index": 0, "correct": False,
    ...          "extracted_answer": None, "length": 512, "truncated": i < 3} for i in range(4)]
    >>> truncation_note(rows, 512)
    'gpgrl eval: note: 75% of the answers to gsm8k reached the 512-token budget and were graded cut off there; for a model that reasons at length, raise --max-new-tokens'
    >>> truncation_note(rows[3:], 512) is None
    True
    """
    cut = {bench: row["truncation_rate"] for bench, row in summarize(records).items()
           if row["truncation_rate"] >= TRUNCATION_NOTE_AT}
    if not cut:
        return None
    shares = ", ".join(f"{100 * rate:.0f}% of the answers to {bench}" for bench, rate in cut.items())
    return (f"gpgrl eval: note: {shares} reached the {budget}-token budget and were graded cut off there; "
            "for a model that reasons at length, raise --max-new-tokens")

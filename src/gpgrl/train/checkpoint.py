"""Atomic checkpoints: written to a hidden temporary folder, then renamed into place.

Layout of ``OUTPUT/checkpoints/step-000010/``:

* ``model/``: the policy and tokenizer in Hugging Face format (``from_pretrained`` loads it as is);
* ``state/``: Accelerate's state (model, optimizer, scheduler, every process's RNG), for ``--resume``;
* ``trainer_state.pt``: step, prompt sampler, counters;
* ``config.yaml``: the run's settings, checked against the resuming run's (:func:`math_differences`).

A rename of a folder is atomic on POSIX file systems, so a crash while saving leaves at most a
``.tmp-step-*`` folder behind, which :func:`latest_checkpoint` ignores: the previous checkpoint stays
the newest complete one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def temp_dir(output_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(output_dir) / f".tmp-step-{step:06d}"


def commit(output_dir: str | Path, step: int, keep: int) -> Path:
    """Move the finished temporary folder into place and delete checkpoints beyond ``keep``."""
    final = checkpoint_dir(output_dir) / f"step-{step:06d}"
    tmp = temp_dir(output_dir, step)
    if final.exists():  # the same step saved again (e.g. a resumed run's final save)
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    for stale in list_checkpoints(output_dir)[: max(0, len(list_checkpoints(output_dir)) - max(keep, 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "data.dataset_kwargs" and k != "params":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def math_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved -> current"`` for every setting that changes the maths (:func:`gpgrl.config.math_keys`:
    the config fields marked ``math``) and differs.

    Both are ``Config.to_dict()`` dicts, with ``algorithm`` already resolved to the preset's full settings.

    >>> math_differences({"rollout": {"group_size": 8, "top_k": 0}}, {"rollout": {"group_size": 4, "top_k": 0}})
    ['rollout.group_size: 8 -> 4']
    """
    from gpgrl.config import math_keys

    a, b = _flatten(saved), _flatten(current)
    for d in (a, b):
        d.pop("algorithm.name", None)  # the label of the preset a run started from; its settings are compared
    diffs = []
    for key in math_keys():
        prefix = key + "."
        keys = sorted({k for k in (*a, *b) if k == key or k.startswith(prefix)})
        for k in keys:
            if a.get(k) != b.get(k):
                diffs.append(f"{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return diffs


def check_resumable(ckpt: Path, cfg: Any) -> None:
    """Raise ValueError, naming every difference, if ``ckpt`` was written with other settings than ``cfg``
    on anything that changes the maths (:func:`math_differences`). Presets are compared by their full settings.

    ``cfg`` is the run's config with its resolved numbers written in (:meth:`gpgrl.config.Config.with_resolved`),
    as the checkpoint's config.yaml holds them."""
    import yaml

    from gpgrl.config import from_dict

    saved = ckpt / "config.yaml"
    if not saved.is_file():
        return
    old = from_dict(yaml.safe_load(saved.read_text()) or {})
    resolved = [{**c.to_dict(), "algorithm": c.algo.to_dict()} for c in (old, cfg)]
    diffs = math_differences(*resolved)
    if diffs:
        raise ValueError(
            f"--resume: the checkpoint {ckpt} was trained with other settings: {'; '.join(diffs)}. Resume with "
            "the run's own settings (its config.yaml), or start a new run in another output_dir."
        )


class _DropExpectedSaveNoise(logging.Filter):
    """Accelerate warns on every save that tied weights (``lm_head.weight``) were de-duplicated; that is
    expected for tied embeddings and says nothing the user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


@contextlib.contextmanager
def quiet_saving() -> Iterator[None]:
    """No per-save noise: the shared-tensor notice and transformers' shard-writing progress bars."""
    from transformers.utils import logging as hf_logging

    noise = _DropExpectedSaveNoise()
    loggers = [logging.getLogger(n) for n in ("accelerate", "accelerate.accelerator", "accelerate.utils.other",
                                               "accelerate.checkpointing")]
    for lg in loggers:
        lg.addFilter(noise)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(noise)
        if bars:
            hf_logging.enable_progress_bar()


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (disk full, no permission); the previous one is kept."""


def _free_space(folder: Path) -> str:
    """``"1.2 GB free"`` on the disk holding ``folder`` (or its nearest existing parent)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return f"{shutil.disk_usage(p).free / 1e9:.1f} GB free"
    return "free space unknown"


def _write_failed(output_dir: str | Path, step: int, tmp: Path, e: Exception) -> CheckpointError:
    """Remove the half-written folder and describe the failure in one line (the previous checkpoint stays)."""
    shutil.rmtree(tmp, ignore_errors=True)
    reason = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).strip().splitlines() or [type(e).__name__])[0]
    reason = reason.removeprefix("Error while serializing: ")  # safetensors' prefix
    if "inline_container" in reason:  # torch's writer: "[enforce fail at inline_container.cc:672] . unexpected pos"
        reason = "torch could not write a file: the disk is full or a file-size limit was hit"
    previous = latest_checkpoint(output_dir)
    kept = f"the previous checkpoint {previous.name} is kept" if previous else "no earlier checkpoint exists"
    return CheckpointError(f"could not write the checkpoint of step {step} into {checkpoint_dir(output_dir)} "
                           f"({reason}; {_free_space(checkpoint_dir(output_dir))}); {kept}. Free some space or lower "
                           "train.save_total_limit, then --resume")


def _write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write raises: OSError, torch's writer's RuntimeError, safetensors' own error class."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # an older safetensors
        return OSError, RuntimeError
    return OSError, RuntimeError, SafetensorError


def save(accelerator, model, tokenizer, output_dir: str | Path, step: int, trainer_state: dict[str, Any],
         config_yaml: str, keep: int) -> Path:
    """Write ``checkpoints/step-N`` atomically from every process (collective); returns its path.

    A failed write (a full disk) raises :class:`CheckpointError` and leaves no partial folder; the
    previous checkpoint is untouched (it is replaced only by the rename of a complete one).
    """
    import torch

    tmp = temp_dir(output_dir, step)
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        with quiet_saving():
            accelerator.save_state(str(tmp / "state"))
            state_dict = accelerator.get_state_dict(model)
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).save_pretrained(str(tmp / "model"), state_dict=state_dict)
                tokenizer.save_pretrained(str(tmp / "model"))
                torch.save(trainer_state, tmp / "trainer_state.pt")
                (tmp / "config.yaml").write_text(config_yaml)
    except _write_errors() as e:
        raise _write_failed(output_dir, step, tmp, e) from e
    accelerator.wait_for_everyone()
    final = checkpoint_dir(output_dir) / f"step-{step:06d}"
    if accelerator.is_main_process:
        final = commit(output_dir, step, keep)
    accelerator.wait_for_everyone()
    return final


def load(accelerator, ckpt: Path) -> dict[str, Any]:
    """Restore Accelerate's state from ``ckpt`` (collective); returns the saved trainer state."""
    import torch

    accelerator.load_state(str(ckpt / "state"))
    return torch.load(ckpt / "trainer_state.pt", weights_only=False)


#: What a run writes into its output folder (a folder holding any of these holds a run).
RUN_FILES = ("checkpoints", "metrics.jsonl", "samples.jsonl", "config.yaml", "tensorboard", "eval")


def existing_run_files(output_dir: str | Path) -> list[str]:
    """The names of :data:`RUN_FILES` in ``output_dir`` that hold results (a checkpoint, a logged step, an
    evaluation). A run that stopped before its first step leaves only empty files and its config.yaml:
    nothing to lose, so those do not count."""
    out = Path(output_dir)
    found = []
    for name in RUN_FILES:
        path = out / name
        if name == "config.yaml" or not path.exists():
            continue
        if (path.is_dir() and not any(path.iterdir())) or (path.is_file() and path.stat().st_size == 0):
            continue
        found.append(name)
    return found


def clear_run(output_dir: str | Path) -> None:
    """Delete a previous run's files (:data:`RUN_FILES`) from ``output_dir``; other files stay."""
    delete_entries(output_dir, RUN_FILES)


def delete_entries(folder: str | Path, names: Iterable[str]) -> None:
    """Delete the files and folders ``names`` of ``folder`` that exist; nothing else in it."""
    for name in names:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def folder_problem(path: str | Path, what: str) -> str | None:
    """Why ``path`` cannot be an output folder (it, or a folder above it, is a file), or None.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".txt") as f:
    ...     folder_problem(f.name, "train.output_dir").endswith("is a file, not a folder; choose another "
    ...                                                          "folder")
    True
    >>> folder_problem("runs/new/run", "--output") is None   # not there yet: it will be created
    True
    """
    path = Path(path).expanduser()
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            if p == path:
                return f"{what} {str(path)!r} is a file, not a folder; choose another folder"
            return (f"{what} {str(path)!r} cannot be a folder: {str(p)!r} above it is a file; choose another "
                    "folder")
    return None


def human_size(num_bytes: float) -> str:
    """``num_bytes`` for a person.

    >>> human_size(512), human_size(2_500_000), human_size(3.2e9)
    ('512 B', '2.5 MB', '3.2 GB')
    """
    if num_bytes < 1000:
        return f"{num_bytes:.0f} B"
    for unit in ("kB", "MB"):
        num_bytes /= 1000
        if num_bytes < 1000:
            return f"{num_bytes:.1f} {unit}"
    return f"{num_bytes / 1000:.1f} GB"


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when ``path`` does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _logged_steps(path: Path) -> int:
    """The number of distinct steps in a ``{"step": ...}`` JSON-lines file (lines not JSON are skipped)."""
    import json

    steps = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            steps.add(json.loads(line).get("step"))
    steps.discard(None)
    return len(steps)


def describe_run(output_dir: str | Path) -> str:
    """What :func:`clear_run` would delete from ``output_dir``, in one line: the checkpoints and their last
    step, the steps in metrics.jsonl, the other logs, the evaluations, and the total size."""
    out = Path(output_dir)
    parts = []
    ckpts = list_checkpoints(out)
    if ckpts:
        last = int(STEP_DIR.match(ckpts[-1].name).group(1))  # type: ignore[union-attr]
        parts.append(f"{len(ckpts)} checkpoint{'s' * (len(ckpts) > 1)} up to step {last}")
    elif checkpoint_dir(out).is_dir() and any(checkpoint_dir(out).iterdir()):
        parts.append("an unfinished checkpoint")
    if (out / "metrics.jsonl").is_file():
        steps = _logged_steps(out / "metrics.jsonl")
        parts.append(f"metrics.jsonl with {steps} step{'s' * (steps != 1)}")
    if (out / "samples.jsonl").is_file():
        parts.append("samples.jsonl")
    if (out / "tensorboard").is_dir():
        parts.append("TensorBoard logs")
    if (out / "eval").is_dir():
        evals = [p for p in (out / "eval").iterdir() if p.is_dir()]
        parts.append(f"{len(evals)} evaluation{'s' * (len(evals) != 1)} (eval/)" if evals else "eval/")
    if (out / "config.yaml").is_file():
        parts.append("config.yaml")
    size = sum(disk_size(out / name) for name in RUN_FILES)
    return f"{', '.join(parts) or 'nothing'}; {human_size(size)}"


def check_output_dir(output_dir: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Raise ValueError, with the fix, when ``output_dir`` cannot hold this run: it (or a folder above it) is
    a file, or it holds another run's results and neither ``resume`` nor ``overwrite`` is set. Reads only:
    call it before anything loads, so that a refusal costs no time."""
    problem = folder_problem(output_dir, "train.output_dir")
    if problem:
        raise ValueError(f"{problem} (--output_dir DIR)")
    found = existing_run_files(output_dir)
    if found and not resume and not overwrite:
        raise ValueError(
            f"train.output_dir {str(output_dir)!r} already holds a run ({', '.join(found)}). Pass --resume to "
            "continue it, --overwrite to delete it and start afresh (on the command line: a recipe never "
            "deletes a run), or choose another --output_dir."
        )


def prepare_output_dir(output_dir: str | Path, *, resume: bool, overwrite: bool) -> str | None:
    """Refuse to mix runs: a folder holding another run's results needs ``resume`` or ``overwrite``
    (:func:`check_output_dir`).

    With ``overwrite`` the old run's files are deleted (:func:`clear_run`) and the line saying what was
    deleted is returned (None when there was nothing to delete); with ``resume`` they are kept (the
    checkpoint's settings are checked by :func:`check_resumable`). Call on the main process only.
    """
    check_output_dir(output_dir, resume=resume, overwrite=overwrite)
    if resume or not existing_run_files(output_dir):
        return None
    removed = describe_run(output_dir)
    clear_run(output_dir)
    return f"--overwrite: deleted the previous run in {str(output_dir)!r}: {removed}"

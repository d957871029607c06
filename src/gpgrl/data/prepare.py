"""``gpgrl data prepare NAME``: write the local data files the shipped recipes read.

Most shipped recipes load their data by Hugging Face id (open-s1, open-rs, GEOQA, the Visual-RFT
classification sets). Three datasets are files the original code built with its own scripts; this writes
them where the recipes look (``data/NAME/train.jsonl`` under ``--out``, default ``data``):

    gpgrl data prepare simplelr_level3to5 [--source FILE]   # the 7B recipes; default: the benchmark data
                                                            # folder's copy ($GPGRL_DATA), else the Hub's
    gpgrl data prepare sat --source SAT_train_15000.json    # vision-visualthinker-sat (VisualThinker's
                                                            # src/data/SAT/prepare_dataset.sh writes it)
    gpgrl data prepare lisa --source lisa_train_sft.json    # vision-visualrft-lisa (Visual-RFT's
                                                            # lisa_evaluation/gen_sft.py writes it)

Image paths are written absolute (resolved against the source file's folder), so the recipes'
``data.image_dir`` does not need the images copied.

>>> sorted(PREPARERS)
['lisa', 'sat', 'simplelr_level3to5']
>>> preparer_for("data/sat/train.jsonl"), preparer_for("elsewhere.jsonl")
('sat', None)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpgrl.data.datasets import get_field, load_records

SIMPLELR_HUB = ("hkust-nlp/SimpleRL-Zoo-Data", "simplelr_qwen_level3to5/train.parquet")


class PrepareError(ValueError):
    """A source that cannot be converted; the message says what was expected."""


def _first(record: dict[str, Any], paths: tuple[str, ...], what: str) -> Any:
    for path in paths:
        try:
            value = get_field(record, path)
        except KeyError:
            continue
        if value is not None:
            return value
    raise PrepareError(f"a record has no {what} (looked for {', '.join(paths)}); its keys: {', '.join(sorted(record))}")


def local_source(name: str) -> Path | None:
    """The copy of ``name``'s source in the benchmark data folder (:func:`gpgrl.paths.find_data_dir`:
    ``$GPGRL_DATA``, else ``../shared/data`` beside a source checkout), if there is one: for
    simplelr_level3to5, ``math/simplelr_level3to5/train.parquet`` (else its ``train.jsonl``)."""
    from gpgrl.paths import find_data_dir

    where = find_data_dir()
    if name != "simplelr_level3to5" or where is None:
        return None
    return where.find("math", "simplelr_level3to5/train.parquet") or where.find("math", "simplelr_level3to5/train.jsonl")


def simplelr_records(source: str | None) -> Iterator[dict[str, Any]]:
    """simpleRL-Zoo's MATH level 3-5 set as ``{question, answer}``, from its parquet or a jsonl copy (None:
    the copy in the benchmark data folder, else the Hub's parquet)."""
    if source is None:
        local = local_source("simplelr_level3to5")
        if local is not None:
            source = str(local)
    if source is None:
        from huggingface_hub import hf_hub_download

        from gpgrl.paths import ENV, hub_unreachable

        problem = hub_unreachable()
        if problem:
            raise PrepareError(f"no local copy of {SIMPLELR_HUB[1]} ({ENV} unset or without "
                               f"math/simplelr_level3to5/) and the Hugging Face Hub is out of reach ({problem}); pass "
                               f"--source FILE, or set {ENV} to the folder holding math/")
        source = hf_hub_download(SIMPLELR_HUB[0], SIMPLELR_HUB[1], repo_type="dataset")
    for record in load_records(source):
        yield {"question": _first(record, ("question", "problem", "extra_info.question"), "question"),
               "answer": str(_first(record, ("answer", "target", "gt_answer", "reward_model.ground_truth"), "answer"))}


def _read_json(source: str | None, name: str) -> tuple[list[dict[str, Any]], Path]:
    if source is None:
        raise PrepareError(f"{name} needs --source FILE (see gpgrl data prepare --help)")
    path = Path(source).expanduser()
    if not path.is_file():
        raise PrepareError(f"no such file {source!r}")
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise PrepareError(f"{source} must hold a JSON list of records")
    return data, path.resolve().parent


def _absolute(image: str, folder: Path) -> str:
    p = Path(image)
    return str(p if p.is_absolute() else folder / p)


def sat_records(source: str | None) -> Iterator[dict[str, Any]]:
    """VisualThinker-R1-Zero's ``SAT_train_15000.json`` (``messages`` + ``images``) as ``{image, problem,
    solution}``: the question without ``<image>``, the gold as the fork writes it, ``<answer>left</answer>``."""
    data, folder = _read_json(source, "sat")
    for record in data:
        messages, images = record.get("messages"), record.get("images")
        if not messages or len(messages) < 2 or not images:
            raise PrepareError("a SAT record needs messages [question, answer] and images; got "
                               f"{', '.join(sorted(record))}")
        yield {"image": _absolute(images[0], folder), "problem": messages[0]["content"].replace("<image>", "").strip(),
               "solution": "<answer>" + messages[1]["content"] + "</answer>"}


def lisa_records(source: str | None) -> Iterator[dict[str, Any]]:
    """Visual-RFT's ``lisa_train_sft.json`` (``conversations``: the user's ``<img>PATH</img> text``, the
    assistant's box) as ``{image, problem, solution}``, the gold as the fork writes it: ``<answer> BOX </answer>``."""
    data, folder = _read_json(source, "lisa")
    for record in data:
        user = next((m["value"] for m in record.get("conversations", []) if m.get("from") == "user"), None)
        box = next((m["value"] for m in record.get("conversations", []) if m.get("from") == "assistant"), None)
        if user is None or box is None or "<img>" not in user or "</img>" not in user:
            raise PrepareError("a LISA record needs conversations with a user turn holding <img>PATH</img> and an "
                               "assistant turn")
        image = user.split("<img>")[1].split("</img>")[0].strip()
        yield {"image": _absolute(image, folder), "problem": user.replace(f"<img>{image}</img>", "").strip(),
               "solution": "<answer> " + box + " </answer>"}


PREPARERS: dict[str, Callable[[str | None], Iterator[dict[str, Any]]]] = {
    "simplelr_level3to5": simplelr_records, "sat": sat_records, "lisa": lisa_records,
}


def preparer_for(dataset: str) -> str | None:
    """The :data:`PREPARERS` name that writes ``dataset`` (a path ending in ``NAME/train.jsonl``), if any."""
    p = Path(dataset)
    return p.parent.name if p.name == "train.jsonl" and p.parent.name in PREPARERS else None


def prepare(name: str, source: str | None = None, out: str | Path = "data") -> tuple[Path, int]:
    """Write ``out/NAME/train.jsonl``; returns its path and the number of records."""
    if name not in PREPARERS:
        raise PrepareError(f"unknown dataset {name!r}; valid: {', '.join(sorted(PREPARERS))}")
    rows = list(PREPARERS[name](source))
    if not rows:
        raise PrepareError(f"{source} has no records")
    path = Path(out) / name / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path, len(rows)


USAGE = """usage: gpgrl data prepare NAME [--source FILE] [--out DIR]

Write DIR/NAME/train.jsonl (DIR: data), the local data a shipped recipe reads. NAME:
  simplelr_level3to5  the 7B recipes; --source: simpleRL-Zoo's train.parquet or a jsonl copy (default:
                      math/simplelr_level3to5/train.parquet in $GPGRL_DATA, the benchmark data folder, if
                      there; else download hkust-nlp/SimpleRL-Zoo-Data simplelr_qwen_level3to5/train.parquet)
  sat                 vision-visualthinker-sat; --source: SAT_train_15000.json from VisualThinker-R1-Zero's
                      src/data/SAT/prepare_dataset.sh (its images stay where they are)
  lisa                vision-visualrft-lisa; --source: lisa_train_sft.json from Visual-RFT's
                      lisa_evaluation/gen_sft.py
"""


def main(args: list[str]) -> int:
    """The ``gpgrl data`` command."""
    import sys

    if not args or args[0] in ("-h", "--help") or any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0 if args else 2
    if args[0] != "prepare" or len(args) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    name, options = args[1], dict(zip(args[2::2], args[3::2]))
    unknown = sorted(set(options) - {"--source", "--out"})
    if unknown or len(args[2:]) % 2:
        print(f"gpgrl data: unexpected arguments {' '.join(args[2:])}\n{USAGE}", file=sys.stderr)
        return 2
    local = local_source(name) if "--source" not in options else None
    if local is not None:
        print(f"gpgrl data: reading {local} (the benchmark data folder's copy; --source FILE to read another)",
              file=sys.stderr)
    try:
        path, count = prepare(name, options.get("--source"), options.get("--out", "data"))
    except (ValueError, OSError) as e:  # PrepareError, DatasetError, bad JSON, missing files
        print(f"gpgrl data: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {count} records to {path}")
    return 0

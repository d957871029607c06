"""``gpgrl data prepare``: the shipped recipes' local data, written from the original's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.cli import main
from gpgrl.data.prepare import PrepareError, prepare

ROOT = Path(__file__).resolve().parents[1]
SHARED_SIMPLELR = SHARED_DATA / "math" / "simplelr_level3to5" / "train.jsonl"


@pytest.mark.skipif(not SHARED_SIMPLELR.is_file(), reason=f"{DATA_MISSING} at {SHARED_DATA}")
def test_simplelr_from_a_local_copy(tmp_path):
    path, count = prepare("simplelr_level3to5", str(SHARED_SIMPLELR), tmp_path)
    assert (path, count) == (tmp_path / "simplelr_level3to5" / "train.jsonl", 8523)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["answer"] == "118" and first["question"].startswith("Let $a$ and $b$ be the two real values")


def test_simplelr_from_verl_style_columns(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": [{"role": "user", "content": "..."}], "extra_info": {"question": "1+1?"},
                                  "reward_model": {"ground_truth": 2}}) + "\n")
    path, _ = prepare("simplelr_level3to5", str(source), tmp_path / "data")
    assert json.loads(path.read_text()) == {"question": "1+1?", "answer": "2"}


def test_sat_and_lisa_from_the_forks_files(tmp_path, monkeypatch, capsys):
    (tmp_path / "SAT").mkdir()
    (tmp_path / "SAT" / "SAT_train_15000.json").write_text(json.dumps([{
        "messages": [{"role": "user", "content": "<image> Answer in natural language. Is the cup left or right?"},
                     {"role": "assistant", "content": "left"}],
        "images": ["SAT_images_train/0_0.png"]}]))
    (tmp_path / "lisa_train_sft.json").write_text(json.dumps([{"conversations": [
        {"from": "user", "value": "<img>imgs/a.jpg</img> the thing you sit on"},
        {"from": "assistant", "value": "(10,20),(300,400)"}]}]))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "prepare", "sat", "--source", "SAT/SAT_train_15000.json"]) == 0
    assert main(["data", "prepare", "lisa", "--source", "lisa_train_sft.json"]) == 0
    assert "wrote 1 records to data/sat/train.jsonl" in capsys.readouterr().out
    sat = json.loads((tmp_path / "data" / "sat" / "train.jsonl").read_text())
    assert sat == {"image": str(tmp_path / "SAT" / "SAT_images_train" / "0_0.png"),
                   "problem": "Answer in natural language. Is the cup left or right?", "solution": "<answer>left</answer>"}
    lisa = json.loads((tmp_path / "data" / "lisa" / "train.jsonl").read_text())
    assert lisa == {"image": str(tmp_path / "imgs" / "a.jpg"), "problem": "the thing you sit on",
                    "solution": "<answer> (10,20),(300,400) </answer>"}
    # the SAT recipe's dry run now reads the prepared file (its columns checked), without a warning
    assert main(["train", "--config", str(ROOT / "recipes" / "vision-visualthinker-sat_qwen2-vl-2b_gpg.yaml"),
                 "--dry-run", "--num-processes", "8"]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out and "dataset: data/sat/train.jsonl: 1 records" in out


def test_prepare_errors_say_what_is_needed(tmp_path, capsys):
    with pytest.raises(PrepareError, match="sat needs --source FILE"):
        prepare("sat", None, tmp_path)
    with pytest.raises(PrepareError, match="unknown dataset 'gsm8k'; valid: lisa, sat, simplelr_level3to5"):
        prepare("gsm8k", None, tmp_path)
    assert main(["data", "prepare", "lisa", "--source", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_simplelr_comes_from_the_benchmark_data_folder_by_default(tmp_path, monkeypatch, capsys):
    """$GPGRL_DATA serves `gpgrl data prepare` as it serves `gpgrl eval` and the tests (before, it always
    downloaded, which offline meant ~25 s of retries)."""
    folder = tmp_path / "data" / "math" / "simplelr_level3to5"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("".join(json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n"
                                                for i in range(3)))
    monkeypatch.setenv("GPGRL_DATA", str(tmp_path / "data"))
    assert main(["data", "prepare", "simplelr_level3to5", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert f"reading {folder / 'train.jsonl'}" in captured.err
    rows = [json.loads(line) for line in (tmp_path / "out" / "simplelr_level3to5" / "train.jsonl").read_text().splitlines()]
    assert rows == [{"question": "0+1?", "answer": "1"}, {"question": "1+1?", "answer": "2"},
                    {"question": "2+1?", "answer": "3"}]


def test_simplelr_without_a_local_copy_or_the_hub_fails_at_once(tmp_path, monkeypatch, capsys):
    import gpgrl.models.loading
    import gpgrl.paths

    monkeypatch.setenv("GPGRL_DATA", str(tmp_path))  # a data folder without the file
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(gpgrl.paths, "_hub_checked", {})
    monkeypatch.setattr(gpgrl.models.loading, "_unreachable", lambda host, port, timeout: f"no answer within {timeout:g} s")
    assert main(["data", "prepare", "simplelr_level3to5", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the Hugging Face Hub is out of reach (huggingface.co cannot be reached: no answer within 5 s)" in err
    assert "--source FILE, or set GPGRL_DATA" in err and len(err.strip().splitlines()) == 1

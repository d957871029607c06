"""Prompts, datasets, samplers and log-probs: the data path from a file to the loss."""

from __future__ import annotations

import pytest
import torch

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.data.datasets import DatasetError, check_columns, get_field, load_records
from gpgrl.data.prompts import PromptBuilder, resolve_prompt
from gpgrl.data.samplers import PromptSampler
from gpgrl.models.logprobs import completion_logprobs
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.rollout.engine import left_pad


def test_chat_template_with_system_prompt_and_plain_text():
    tok = build_char_tokenizer()
    chat = PromptBuilder(tok, resolve_prompt("plain", system_prompt="Add.", template="{question}="))
    assert chat.text("1+2") == "<|system|>Add.<|end|><|user|>1+2=<|end|><|assistant|>"
    plain = PromptBuilder(tok, resolve_prompt("plain", chat_template=False, template="Q: {question}\nA:"))
    assert plain.text("1+2") == "Q: 1+2\nA:"
    # plain text keeps the system prompt: system, blank line, question (training and eval share this)
    with_system = PromptBuilder(tok, resolve_prompt("plain", system_prompt="Add.", chat_template=False))
    assert with_system.text("1+2") == "Add.\n\n1+2"
    cut = PromptBuilder(tok, chat.preset, max_length=5)
    prompt, truncated = cut.build("1+2")
    assert truncated
    assert tok.convert_ids_to_tokens(prompt.ids) == ["+", "2", "=", "<|end|>", "<|assistant|>"]  # the end is kept
    whole, truncated = chat.build("1+2")
    assert (whole.ids, truncated) == (tok(chat.text("1+2"))["input_ids"], False)
    assert whole.text == chat.text("1+2")


def test_train_and_eval_build_the_same_prompt(tmp_path):
    """The trainer's prompts and gpgrl eval's come from one builder: same preset, same ids."""
    from gpgrl.config import from_dict
    from gpgrl.eval import evaluate
    from gpgrl.eval.benchmarks import Problem
    from gpgrl.train.trainer import Trainer
    from helpers import ScriptedEngine

    tok = build_char_tokenizer()
    cfg = from_dict({"model": {"name_or_path": "tiny"}, "data": {"dataset": "builtin:arithmetic", "prompt": "qwen_boxed",
                                                                 "chat_template": False},
                     "rewards": [{"name": "accuracy"}], "rollout": {"group_size": 2, "max_completion_length": 4},
                     "train": {"steps": 1, "prompts_per_step": 2, "output_dir": str(tmp_path / "run")},
                     "log": {"progress": False, "report_to": []}})
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok), tokenizer=tok, engine=ScriptedEngine(tok))
    question = trainer.records[0]["question"]
    train_prompt = trainer.rollouts.prompt(0)
    assert train_prompt.text.startswith("You are a helpful assistant.\n\n" + question)
    seen = []

    class Recording(ScriptedEngine):
        def generate(self, prompts, params, num_samples):
            seen.extend(prompts)
            return super().generate(prompts, params, num_samples)

    evaluate(None, tok, {"t": [Problem("t", "0", question, "1")]}, engine=Recording(tok),
             prompt=cfg.data.prompt_preset(), max_new_tokens=4, show_progress=False)
    assert seen[0].ids == train_prompt.ids and seen[0].text == train_prompt.text


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match=r"empty\.jsonl has no records \(the file is empty\)"):
        load_records(str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+2", answer: 4}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: not valid JSON"):
        load_records(str(bad))
    listed = tmp_path / "list.jsonl"
    listed.write_text('["1+1", "2"]\n')
    with pytest.raises(DatasetError, match=r"list\.jsonl:1: a JSON list, not an object"):
        load_records(str(listed))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records(str(tmp_path / "missing.jsonl"))


def test_builtin_datasets_come_from_a_registry_with_settings():
    rows = load_records("builtin:arithmetic", split="test", digits=3, num_train=5, num_test=4)
    assert len(rows) == 4
    a, b = rows[0]["question"].split("+")
    assert len(a) == len(b) == 3 and int(rows[0]["answer"]) == int(a) + int(b)
    with pytest.raises(DatasetError, match="unknown built-in dataset 'builtin:nope'; valid: builtin:arithmetic"):
        load_records("builtin:nope")
    with pytest.raises(DatasetError, match="does not take these settings"):
        load_records("builtin:arithmetic", colour="red")


def test_load_jsonl_and_parquet_with_nested_columns():
    math = SHARED_DATA / "math" / "simplelr_level3to5"
    if not math.is_dir():
        pytest.skip(f"{DATA_MISSING} at {SHARED_DATA}")
    rows = load_records(str(math / "train.jsonl"))
    assert len(rows) == 8523 and rows[0]["answer"] == "118"
    parquet = load_records(str(math / "train.parquet"))
    assert len(parquet) == 8523
    check_columns(parquet, {"data.answer_column": "reward_model.ground_truth"}, "train.parquet")
    assert get_field(parquet[0], "reward_model.ground_truth") == "118"
    assert isinstance(parquet[0]["prompt"], list) and parquet[0]["prompt"][-1]["role"] == "user"  # chat messages


def test_unknown_local_file_type(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match=r"unknown file type '.txt'"):
        load_records(str(f))


def test_uniform_sampler_covers_each_epoch_and_restores_its_state():
    s = PromptSampler(10, seed=3)
    first = s.draw(10)
    assert sorted(first) == list(range(10))
    state = s.state_dict()
    nxt = s.draw(7)
    s2 = PromptSampler(10, seed=999)
    s2.load_state_dict(state)
    assert s2.draw(7) == nxt


@pytest.mark.parametrize(("strategy", "expected"), [
    ("hard", [1.0, 0.5, 0.0, 1.0]),  # 1 - mean: never solved 1, half 0.5, always 0; no history 1
    ("soft", [0.0, 0.5, 0.0, 1.0]),  # as hard, but 0 for never solved too
    ("medium", [0.0, 1.0, 0.0, 1.0]),  # only prompts whose groups carry a signal
])
def test_curriculum_weights_are_the_originals(strategy, expected):
    s = PromptSampler(4, seed=0, strategy=strategy)
    s.update([0, 1, 2], [0.0, 0.25, 1.0])
    s.update([1], [0.75])  # prompt 1's history: mean(0.25, 0.75) = 0.5
    s.update([3], [float("nan")])  # a group whose rewards all failed tells nothing
    assert s.weights().tolist() == expected


def test_curriculum_epochs_draw_by_weight_and_clear_the_drawn_histories():
    s = PromptSampler(1000, seed=0, strategy="medium")
    s.update(list(range(500)), [1.0] * 500)  # half the prompts always solved: weight 0
    s.draw(1000)  # finishes the first epoch (drawn before any history)
    nxt = s.draw(10)  # a new epoch: weights from the histories
    assert all(i >= 500 for i in s.order.tolist()) and all(i >= 500 for i in nxt)
    assert all(i not in s.history for i in set(s.order.tolist()))  # drawn: history cleared
    assert len(s.history) > 0  # prompts not drawn this epoch keep theirs
    state = s.state_dict()
    again = PromptSampler(1000, seed=99, strategy="medium")
    again.load_state_dict(state)
    assert again.draw(37) == s.draw(37)  # a resumed run draws the same prompts


def test_curriculum_with_no_weight_left_draws_uniformly():
    s = PromptSampler(4, seed=0, strategy="medium")
    s.update([0, 1, 2, 3], [1.0, 0.0, 1.0, 0.0])
    s.draw(4)
    assert len(s.draw(4)) == 4  # every weight is 0: a uniform epoch instead of an error


def test_unknown_strategy():
    with pytest.raises(ValueError, match="choose one of uniform, hard, soft, medium"):
        PromptSampler(3, strategy="easy")  # type: ignore[arg-type]


def test_log_probs_do_not_depend_on_left_padding():
    """A prompt padded in a batch must get the same log-probs as alone (positions skip the padding)."""
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=1).eval()
    prompts = [tok("12+7=")["input_ids"], tok("3+4=")["input_ids"]]
    completion = tok("<answer>19</answer>")["input_ids"]
    p_ids, p_mask = left_pad(prompts, tok.pad_token_id)
    c_ids = torch.tensor([completion, completion])
    c_mask = torch.ones_like(c_ids)
    with torch.no_grad():
        batched, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
        alone, _ = completion_logprobs(model, torch.tensor([prompts[1]]), torch.ones(1, len(prompts[1]), dtype=torch.long),
                                       c_ids[:1], c_mask[:1])
        # and they equal a plain forward pass with log_softmax
        full = torch.tensor([prompts[1] + completion])
        ref = torch.log_softmax(model(full).logits[0, len(prompts[1]) - 1 : -1].float(), -1)
        ref = ref.gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)
    assert p_mask[1].tolist()[0] == 0  # the second prompt is padded
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[0], ref, atol=1e-5, rtol=1e-5)

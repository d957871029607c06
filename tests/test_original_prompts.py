r"""The prompts the shipped recipes send are the characters the original sent, byte for byte.

* RS1 / RS3: AMAP-ML/GPG at e096da8, open-rs/recipes/gpg.yaml line 9 holds the system prompt as a
  double-quoted YAML string with ``\\boxed{{}} .``; YAML makes that ``\boxed{{}} .``, and
  open-rs/src/open_r1/gpg.py ``make_conversation`` puts ``training_args.system_prompt`` into the system
  turn as it is (never ``.format``-ed), so the model saw the doubled braces. The same line is in
  open-rs/recipes/{gpg_std,grpo,gpg_7B,...}.yaml and open-r1/recipes/*/gpg/config_v*.yaml.
* Qwen2.5-Math-7B: open-r1/src/open_r1/gpg.py ``make_conversation_math35`` takes the prompt as
  ``example["instruction"][0]['content']`` (open-r1/src/open_r1/utils/data_utils.py
  ``custom_loading_dataset`` renames the parquet's ``prompt`` column to ``instruction``) and sends it
  unformatted; simpleRL-Zoo's simplelr_qwen_level3to5/train.parquet stores it in Qwen's chat template with
  ``\boxed{{}}.`` in every record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.data.prompts import PromptBuilder
from gpgrl.recipe import load_config

ROOT = Path(__file__).resolve().parents[1]

#: open-rs/recipes/gpg.yaml line 9 (AMAP-ML/GPG e096da8), as it is in the file.
OPEN_RS_SYSTEM_PROMPT_LINE = (
    'system_prompt: "A conversation between User and Assistant. The user asks a question, and the Assistant '
    "solves it. The assistant first thinks about the reasoning process in the mind and then provides the user "
    "with the answer, and put your final answer within \\\\boxed{{}} . The reasoning process and answer are "
    "enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    'here </think> <answer> answer here </answer>. Note that respond by English, NOT use other languages."'
)
#: What the model saw: the YAML string's value.
OPEN_RS_SYSTEM_PROMPT = yaml.safe_load(OPEN_RS_SYSTEM_PROMPT_LINE)["system_prompt"]

#: simplelr_qwen_level3to5/train.parquet, record 0's prompt[0].content (SimpleRL-Zoo-Data).
SIMPLELR_RECORD_0 = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nLet $a$ and $b$ be the two real "
    "values of $x$ for which\\[\\sqrt[3]{x} + \\sqrt[3]{20 - x} = 2\\]The smaller of the two values can be "
    "expressed as $p - \\sqrt{q}$, where $p$ and $q$ are integers. Compute $p + q$.\nPlease reason step by step, "
    "and put your final answer within \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n"
)

# Qwen2.5(-Math)'s chat template renders a system and a user message as ChatML turns, then opens the
# assistant's; this is that rendering (its tool and default-system branches are not reached here).
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _chatml_tokenizer():
    from gpgrl.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    tok.chat_template = CHATML
    return tok


def test_the_original_line_reads_as_doubled_braces():
    assert "\\boxed{{}} ." in OPEN_RS_SYSTEM_PROMPT and "\\\\" not in OPEN_RS_SYSTEM_PROMPT
    assert OPEN_RS_SYSTEM_PROMPT.startswith("A conversation between") and len(OPEN_RS_SYSTEM_PROMPT) == 500


@pytest.mark.parametrize("recipe", ["r1-distill-qwen-1.5b_gpg-rs1", "r1-distill-qwen-1.5b_gpg-rs3"])
def test_the_rs_recipes_send_open_rs_system_prompt_byte_for_byte(recipe):
    cfg = load_config(ROOT / "recipes" / f"{recipe}.yaml")
    assert cfg.data.system_prompt == OPEN_RS_SYSTEM_PROMPT
    # into the system turn as it is: no formatting turns {{}} into {}
    text = PromptBuilder(_chatml_tokenizer(), cfg.data.prompt_preset()).text("What is 1+1?")
    assert text == f"<|im_start|>system\n{OPEN_RS_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n" \
                   "<|im_start|>assistant\n"


def test_a_translated_original_recipe_keeps_the_doubled_braces(tmp_path):
    """The original's YAML read unchanged (open-rs/recipes/gpg.yaml's line, and open-r1's GPG configs')."""
    path = tmp_path / "gpg.yaml"
    path.write_text("original_script: openrs_gpg\nmodel_name_or_path: m\ndataset_name: d\n"
                    "reward_funcs: [format, cosine]\n" + OPEN_RS_SYSTEM_PROMPT_LINE + "\n")
    assert load_config(path).data.system_prompt == OPEN_RS_SYSTEM_PROMPT


def _simplelr_rows(n: int | None = None) -> list[dict]:
    pq = pytest.importorskip("pyarrow.parquet")
    path = SHARED_DATA / "math" / "simplelr_level3to5" / "train.parquet"
    if not path.exists():
        pytest.skip(f"{DATA_MISSING} at {SHARED_DATA}")
    return pq.read_table(path, columns=["question", "target", "prompt"]).to_pylist()[:n]


@pytest.mark.parametrize("recipe", ["qwen2.5-math-7b_gpg", "qwen2.5-math-7b_grpo", "qwen2.5-math-7b_dr_grpo"])
def test_the_7b_recipes_send_the_parquets_prompt_byte_for_byte(recipe):
    rows = _simplelr_rows()
    assert rows[0]["prompt"][0]["content"] == SIMPLELR_RECORD_0
    cfg = load_config(ROOT / "recipes" / f"{recipe}.yaml")
    builder = PromptBuilder(_chatml_tokenizer(), cfg.data.prompt_preset())
    assert builder.text(rows[0]["question"]) == SIMPLELR_RECORD_0
    differ = [i for i, r in enumerate(rows) if builder.text(r["question"]) != r["prompt"][0]["content"]]
    assert (len(rows), differ) == (8523, [])


def test_the_prepared_jsonl_gives_the_same_characters(tmp_path):
    """`gpgrl data prepare simplelr_level3to5 --source train.parquet`: the recipe reads its question column."""
    from gpgrl.data.prepare import prepare

    rows = _simplelr_rows(50)
    out, count = prepare("simplelr_level3to5", str(SHARED_DATA / "math" / "simplelr_level3to5" / "train.parquet"),
                         tmp_path)
    assert count == 8523
    prepared = [json.loads(line) for line in out.read_text().splitlines()[:50]]
    cfg = load_config(ROOT / "recipes" / "qwen2.5-math-7b_gpg.yaml")
    builder = PromptBuilder(_chatml_tokenizer(), cfg.data.prompt_preset())
    assert [builder.text(p[cfg.data.prompt_column]) for p in prepared] == [r["prompt"][0]["content"] for r in rows]
    assert [p[cfg.data.answer_column] for p in prepared] == [r["target"] for r in rows]

"""Contract test: the recipes' answer rewards (``semantics: math_verify_0.5.2``) against the original GPG code's
reward functions run on the real math-verify 0.5.2 (AMAP-ML/GPG, commit e096da8: open-r1/setup.py and
open-rs/setup.py pin ``math-verify==0.5.2``; the functions are open-r1/src/open_r1/rewards.py's
``accuracy_reward_lv35``, ``accuracy_reward`` and ``get_cosine_scaled_reward``).

``bash tests/mathverify_contract/install.sh`` puts math-verify 0.5.2 and its pins in a folder outside the
project's environment; ``probe.py`` runs the original functions there in a subprocess (with only that folder
on ``PYTHONPATH``), on the probes of ``cases.py`` (benchmark golds in 16 completion shapes: boxed, unboxed,
several boxes, ``<answer>`` tags, no LaTeX, malformed LaTeX), and this test scores the same probes with gpgrl's
rewards as the recipes configure them. Every probe must agree, except the ones listed in
``cases.KNOWN_DIFFERENCES`` (each with its cause), and docs/recipes.md's table of remaining differences must be
the one this test computes. Without the install the test skips, except in CI (``CI=true``, or
``GPGRL_REQUIRE_MATHVERIFY_CONTRACT=1``), where it fails; without the benchmark data it skips.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import DATA_MISSING, SHARED_DATA

pytestmark = pytest.mark.mathverify_contract

HERE = Path(__file__).parent
REPO = HERE.parents[1]
ROOT = Path(os.environ.get("GPGRL_MATHVERIFY_CONTRACT_DIR", Path.home() / ".cache" / "gpgrl" / "mathverify-contract"))
FOLDER = ROOT / "math-verify-0.5.2"
#: The probe stops itself after this many seconds (it needs about 10 on 2 busy cores).
PROBE_BUDGET_S = 240

_spec = importlib.util.spec_from_file_location("mathverify_contract_cases", HERE / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def _require_install() -> None:
    if not (FOLDER / ".complete").exists():
        message = "math-verify 0.5.2 is not prepared: run `bash tests/mathverify_contract/install.sh`"
        if os.environ.get("GPGRL_REQUIRE_MATHVERIFY_CONTRACT") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def probes() -> list[dict]:
    math_dir = SHARED_DATA / "math"
    if not (math_dir / "math500" / "test.jsonl").exists():
        pytest.skip(f"{DATA_MISSING} at {SHARED_DATA}")
    return cases.build(math_dir) + cases.known_difference_cases()


def run_probe(probes: list[dict], tmp: Path, budget: float = PROBE_BUDGET_S) -> dict:
    """The original functions' values on math-verify 0.5.2, from the probe subprocess."""
    _require_install()
    path, out = tmp / "cases.json", tmp / "original.json"
    path.write_text(json.dumps(probes))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(FOLDER), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-W", "ignore", str(HERE / "probe.py"), str(path), str(out), str(budget)],
                          env=env, capture_output=True, text=True, timeout=budget + 60)
    assert out.exists(), f"the probe wrote nothing (exit {done.returncode}): {done.stderr[-3000:]}"
    facts = json.loads(out.read_text())
    assert done.returncode == 0 and not facts["unfinished"], (
        f"the probe {facts['status']}; {len(facts['unfinished'])} cases left, the first {facts['unfinished'][:3]}")
    return facts


@pytest.fixture(scope="module")
def original(probes, tmp_path_factory) -> dict:
    facts = run_probe(probes, tmp_path_factory.mktemp("mathverify-0.5.2"))
    # the real 0.5.2 and its pins ran, from the installed folder, never the project's math-verify
    assert facts["version"] == "0.5.2" and facts["sympy"] == "1.13.1"
    assert facts["math_verify"].startswith(str(FOLDER)) and facts["latex2sympy2_extended"].startswith(str(FOLDER))
    return facts["results"]


@pytest.fixture(scope="module")
def ours(probes) -> dict:
    return cases.gpgrl_values(probes)


def differences(probes: list[dict], original: dict, ours: dict) -> dict[str, tuple]:
    return {p["id"]: (original[p["id"]], ours[p["id"]]) for p in probes if original[p["id"]] != ours[p["id"]]}


def test_the_recipes_answer_rewards_equal_math_verify_0_5_2_except_the_listed_differences(probes, original, ours):
    assert len(probes) >= 600
    found = differences(probes, original, ours)
    known = {k["id"]: (k["original"], k["gpgrl"]) for k in cases.KNOWN_DIFFERENCES}
    unexplained = {k: v for k, v in found.items() if k not in known}
    assert not unexplained, f"{len(unexplained)} probes differ from math-verify 0.5.2 (original, gpgrl): {unexplained}"
    assert found == known  # each listed difference still occurs, with the values listed


def test_the_original_rules_the_probes_exercise(probes, original):
    """What 0.5.2 itself did on the probes (so the agreement above is about these rules, not a vacuous one)."""
    by_shape: dict[tuple[str, str], Counter] = {}
    for p in probes:
        if "shape" in p:
            by_shape.setdefault((p["reward"], p["shape"]), Counter())[original[p["id"]]] += 1
    lv35 = {shape: counts for (reward, shape), counts in by_shape.items() if reward == "accuracy_lv35"}
    n = sum(lv35["boxed_in_dollars"].values())
    assert lv35["two_boxes_last_right"][1.0] >= n - 2  # with two boxes, the last one is the answer
    assert lv35["two_boxes_last_wrong"][0.0] == n and lv35["boxes_joined_by_and"][0.0] == n  # {W, G} is no answer
    assert lv35["three_boxes"][1.0] >= n - 2  # boxes joined by more than a separator: the last one
    assert lv35["answer_tag_bare"][1.0] >= 5 and lv35["answer_tag_bare"][0.0] >= n - 15  # only LaTeX after "answer"
    assert lv35["no_latex"][0.0] >= n - 15 and lv35["unclosed_box"][0.0] == n
    assert lv35["answer_tag_dollars"][1.0] >= n - 2 and lv35["final_answer_unboxed"][1.0] >= n - 2
    # the original `accuracy` parses a bare gold ("5": no LaTeX) to nothing and then rewards 1.0 whatever the answer
    bare_wrong = [p for p in probes if p["reward"] == "accuracy" and p.get("shape") == "wrong_boxed" and p["gold"].isdigit()]
    assert len(bare_wrong) >= 3 and all(original[p["id"]] == 1.0 for p in bare_wrong)
    # cosine: 1.0 for a gold that parses to nothing, else the length schedule (0.5 .. 1.0 right, 0.0 .. -0.5 wrong)
    cosine = Counter(round(original[p["id"]], 3) for p in probes if p["reward"] == "cosine")
    assert cosine[1.0] >= 100 and sum(n for v, n in cosine.items() if v < 0) >= 50


def test_docs_table_of_remaining_differences_is_the_computed_one(probes, original, ours):
    table = cases.remaining_differences_table(probes, differences(probes, original, ours))
    assert table in (REPO / "docs" / "recipes.md").read_text(), (
        "docs/recipes.md, section 'Accuracy reward vs math-verify 0.5.2', must hold:\n" + table)


def test_the_probe_bounds_itself(probes, tmp_path):
    """A budget too small for the probes: it stops, says so, and lists what it did not run."""
    _require_install()
    path, out = tmp_path / "cases.json", tmp_path / "original.json"
    path.write_text(json.dumps([dict(p, id=f"{p['id']}#{k}") for k in range(20) for p in probes]))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(FOLDER), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-W", "ignore", str(HERE / "probe.py"), str(path), str(out), "3"],
                          env=env, capture_output=True, text=True, timeout=120)
    facts = json.loads(out.read_text())
    assert done.returncode == 3 and facts["status"] == "stopped after the budget of 3 s" and facts["unfinished"]

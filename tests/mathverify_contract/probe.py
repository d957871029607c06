"""The original GPG forks' answer rewards, run on the real math-verify 0.5.2; writes each case's value as JSON.

Started by ``test_mathverify_contract.py`` in a subprocess whose ``PYTHONPATH`` holds only the folder that
``install.sh`` filled (math-verify 0.5.2, latex2sympy2_extended 1.0.6, sympy 1.13.1: never the project's
environment, and this script imports nothing of gpgrl):

    PYTHONPATH=DIR python tests/mathverify_contract/probe.py CASES.json OUT.json BUDGET_SECONDS

What each reward does is written here from the original's semantics (AMAP-ML/GPG, commit e096da8,
``open-r1/src/open_r1/rewards.py`` and ``open-rs/src/open_r1/rewards.py``), calling 0.5.2's own ``parse`` and
``verify`` with the original's arguments:

- ``accuracy_lv35`` (open-r1 ``accuracy_reward_lv35``, the Qwen2.5-Math-7B runs): the gold ``sol`` becomes the
  text ``$\\boxed{sol}$`` (the source's ``"$\\\\boxed{}$".format(sol)``: two backslash characters), parsed with
  ``parse``'s default extraction configs and ``extraction_mode="first_match"``; the completion is parsed with
  one ``LatexExtractionConfig`` (normalisation: ``nits=False, malformed_operators=False, basic_latex=True,
  equations=True, boxed="all", units=True``; ``boxed_match_priority=0``, ``try_extract_without_anchor=False``)
  and ``extraction_mode="first_match"``. Reward ``float(verify(answer, gold))`` (note the order: the
  completion goes first), 0.0 when ``verify`` raises, and 1.0 when the gold parses to nothing.
- ``accuracy`` (``accuracy_reward``, both forks): the same, except that the gold text is ``sol`` itself,
  parsed with ``[LatexExtractionConfig()]`` only.
- ``cosine`` (``get_cosine_scaled_reward``, both forks, with open-rs's defaults: 0.0 / -0.5 for a wrong
  answer, 0.5 / 1.0 for a right one, ``max_len`` 1000, as the RS1 recipe): the gold as in ``accuracy``; the
  completion's normalisation has ``boxed=True`` instead of ``"all"``; ``verify`` is not guarded; 1.0 where
  the gold parses to nothing, else ``lo + 0.5 * (hi - lo) * (1 + cos(pi * len(completion) / max_len))`` with
  (lo, hi) = (0.5, 1.0) when right and (-0.5, 0.0) when wrong (the wrong bounds swapped, as the source does).

The probe bounds itself: past BUDGET_SECONDS a watchdog writes what it has (``"unfinished"`` lists the
cases left) and exits with status 3, whatever the case in progress is doing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time


def _answer_config(boxed):
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig

    return [LatexExtractionConfig(
        normalization_config=NormalizationConfig(nits=False, malformed_operators=False, basic_latex=True,
                                                 equations=True, boxed=boxed, units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)]


def reward(kind: str, completion: str, gold: str):
    from math_verify import LatexExtractionConfig, parse, verify

    if kind == "accuracy_lv35":
        gold_parsed = parse("$" + "\\\\" + "boxed{" + gold + "}$", extraction_mode="first_match")
    else:
        gold_parsed = parse(gold, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()])
    if len(gold_parsed) == 0:
        return 1.0
    answer = parse(completion, extraction_config=_answer_config(True if kind == "cosine" else "all"),
                   extraction_mode="first_match")
    if kind == "cosine":
        lo, hi = (0.5, 1.0) if verify(answer, gold_parsed) else (-0.5, 0.0)
        return lo + 0.5 * (hi - lo) * (1.0 + math.cos(len(completion) / 1000 * math.pi))
    try:
        return float(verify(answer, gold_parsed))
    except Exception:
        return 0.0


def main(cases_path: str, out_path: str, budget: float) -> int:
    import latex2sympy2_extended
    import math_verify
    import sympy

    cases = json.loads(open(cases_path).read())
    facts = {"math_verify": math_verify.__file__, "sympy": sympy.__version__,
             "latex2sympy2_extended": latex2sympy2_extended.__file__, "results": {}, "unfinished": []}
    from importlib.metadata import version

    facts["version"] = version("math-verify")
    lock = threading.Lock()

    def write(status: str) -> None:
        with lock:
            done = facts["results"]
            facts["unfinished"] = [c["id"] for c in cases if c["id"] not in done]
            facts["status"] = status
            with open(out_path + ".tmp", "w") as f:
                json.dump(facts, f)
            os.replace(out_path + ".tmp", out_path)

    def watchdog() -> None:
        write(f"stopped after the budget of {budget:g} s")
        os._exit(3)

    timer = threading.Timer(budget, watchdog)
    timer.daemon = True
    timer.start()
    start = time.monotonic()
    for case in cases:
        value = reward(case["reward"], case["completion"], case["gold"])
        with lock:
            facts["results"][case["id"]] = value
    facts["seconds"] = round(time.monotonic() - start, 2)
    timer.cancel()
    write("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))

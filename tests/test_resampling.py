"""Threshold resampling's choice of groups (pure) and the trainer following it, with hand-checkable batches."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gpgrl.algorithms.resampling import (
    enough_signal,
    gathered_alpha,
    gathered_selection,
    kept_with_signal,
    select_groups,
)


def test_signal_first_then_degenerate_in_draw_order_extras_dropped():
    # draw 1: groups 0..3 with flags D S D D (D = degenerate); draw 2: groups 4..7 with S S D S
    flags = [True, False, True, True, False, False, True, False]
    assert select_groups(flags, 4) == [1, 4, 5, 7]  # 4 places: the 4 signal groups, in draw order
    assert select_groups(flags, 6) == [1, 4, 5, 7, 0, 2]  # filled with the first degenerate ones
    assert select_groups(flags[:4], 4) == [1, 0, 2, 3]  # one draw: signal first, order otherwise kept
    assert select_groups(flags, 2) == [1, 4]  # more signal than places: the later ones are dropped
    with pytest.raises(ValueError, match="8 groups were drawn, 9 are needed"):
        select_groups(flags, 9)


def test_threshold_decision():
    assert kept_with_signal([True, False, True, True], 4) == 1
    assert kept_with_signal([False] * 6, 4) == 4  # at most the places there are
    assert not enough_signal(1, 4, 0.5) and enough_signal(2, 4, 0.5)  # 2 >= 0.5 * 4
    assert enough_signal(0, 4, 0.0)  # threshold 0 never resamples
    assert not enough_signal(3, 4, 1.0) and enough_signal(4, 4, 1.0)  # DAPO: every group
    with pytest.raises(ValueError):
        enough_signal(1, 4, 1.5)


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(0, 40))
def test_selection_properties(flags, n):
    if n > len(flags):
        return
    chosen = select_groups(flags, n)
    assert len(chosen) == len(set(chosen)) == n
    signal = [i for i in chosen if not flags[i]]
    assert len(signal) == kept_with_signal(flags, n)
    assert chosen[: len(signal)] == signal  # signal groups come first...
    assert chosen == sorted(signal) + sorted(set(chosen) - set(signal))  # ...each kind in draw order


def test_the_trainer_keeps_signal_groups_first_and_drops_extras(tmp_path):
    """Scripted rewards: the first draw has one group with a signal out of 4, the second has three."""
    from gpgrl.config import from_dict
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import ScriptedEngine

    # question i's group of G=2 answers gets rewards (i, i) (degenerate) or (i, i + 0.5) (a signal)
    signal = {1, 4, 5, 7}
    records = [{"question": f"q{i}", "answer": str(i)} for i in range(8)]

    def scripted(completions, answer, **_):
        out = []
        for j, a in enumerate(answer):
            i = int(a)
            out.append(float(i) + (0.5 if i in signal and j % 2 else 0.0))
        return out

    cfg = from_dict({"model": {"name_or_path": "tiny"}, "data": {"dataset": "mine"},
                     "rollout": {"group_size": 2, "max_completion_length": 4},
                     "algorithm": {"preset": "gpg", "resample_threshold": 0.75, "max_resample_draws": 5},
                     "train": {"steps": 1, "prompts_per_step": 4, "output_dir": str(tmp_path / "run")},
                     "log": {"progress": False, "report_to": []}})
    tok = build_char_tokenizer()
    trainer = Trainer(cfg, model=build_tiny_model(tok), tokenizer=tok, dataset=records, rewards=[scripted],
                      engine=ScriptedEngine(tok))
    order = iter([[0, 1, 2, 3], [4, 5, 6, 7]])  # the prompts of draw 1 and draw 2
    trainer.rollouts.sampler.draw = lambda n: next(order)
    batch, info = trainer.rollouts.collect()
    # draw 1 keeps 1 signal group of 4 (< 0.75 * 4): draw again; then 4 signal groups >= 3: stop.
    assert info["rollout/draws"] == 2.0
    assert batch.prompt_index.tolist() == [1, 1, 4, 4, 5, 5, 7, 7]  # signal first, draw order, extras dropped
    assert batch.rewards.tolist() == [1.0, 1.5, 4.0, 4.5, 5.0, 5.5, 7.0, 7.5]
    # every answer drawn counts in the sampled mean: (sum of i over 8 questions * 2 + 0.5 * 4) / 16
    assert info["reward/sampled_mean"] == pytest.approx((2 * sum(range(8)) + 0.5 * 4) / 16)
    assert torch.equal(batch.completion_mask.sum(1) > 0, torch.ones(8, dtype=torch.bool))


def test_the_originals_selection_fills_from_the_last_draw():
    # one process, two draws of 4 groups: D S D D, then S S D S (D = degenerate)
    draws = [[True, False, True, True], [False, False, True, False]]
    assert gathered_selection(draws, 4) == [1, 4, 5, 7]  # every signal group, in draw order
    assert gathered_selection([[True, False, True, True]], 4) == [1, 0, 2, 3]
    assert gathered_selection([[False, True, True, True], [True, True, False, True]], 4) == [0, 6, 4, 5]
    assert gathered_selection([[False, True], [True, True]], 2) == [0, 2]  # draw 1's degenerate group is dropped
    with pytest.raises(ValueError, match="5 groups are available, 6 are needed"):
        gathered_selection(draws, 6)  # only the last draw's degenerate group may fill
    # alpha = 1 / min(1, valid / P), valid uncapped: 1 of 4 -> 4; 2 of 4 -> 2; 6 of 4 -> 1; none -> 0 (no signal)
    assert [gathered_alpha(n, 4) for n in (1, 2, 6, 0)] == [4.0, 2.0, 1.0, 0.0]


def test_kept_and_gathered_counts_differ_with_two_processes():
    """P = 4 prompts per step on 2 processes (2 each), G = 2. Process A draws only groups with a signal
    (S), process B only degenerate ones (D)."""
    a, b = [False, False], [True, True]
    # threshold 1.0 (every group): after draw 1, kept counts min(2, 2) + min(0, 2) = 2 and gathered 2 + 0:
    # both draw again. After draw 2, kept still counts 2 + 0 (A keeps only its 2 places) and draws on,
    # while gathered counts 4 + 0 = 4 >= 1.0 x 4 and stops: the original stops after 2 draws.
    kept = kept_with_signal(a + a, 2) + kept_with_signal(b + b, 2)
    gathered = sum(not d for d in a + a) + sum(not d for d in b + b)
    assert (kept, gathered) == (2, 4)
    assert not enough_signal(kept, 4, 1.0) and enough_signal(gathered, 4, 1.0)
    # ...and alpha: the trained batch is A's 2 signal groups and B's 2 degenerate ones (M = 4 of B = 8
    # answers): AGE's B / (B - M) = 2, the original's 1 / min(1, 4 / 4) = 1.
    assert 8 / (8 - 4) == 2.0 and gathered_alpha(gathered, 4) == 1.0


def test_the_trainer_counts_as_the_original_with_resample_count_gathered(tmp_path):
    """As the test above, with signals in questions 1 and 4 only: draw 1 (questions 0-3) has 1 of 4, under
    0.5 x 4; draw 2 (4-7) brings the count to 2: stop. Filled from the last draw: questions 5 and 6."""
    from gpgrl.config import from_dict
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import ScriptedEngine

    signal = {1, 4}
    records = [{"question": f"q{i}", "answer": str(i)} for i in range(8)]

    def scripted(completions, answer, **_):
        return [float(a) + (0.5 if int(a) in signal and j % 2 else 0.0) for j, a in enumerate(answer)]

    batches = {}
    for count in ("kept", "gathered"):
        cfg = from_dict({"model": {"name_or_path": "tiny"}, "data": {"dataset": "mine"},
                         "rollout": {"group_size": 2, "max_completion_length": 4},
                         "algorithm": {"preset": "gpg", "resample_threshold": 0.5, "resample_count": count},
                         "train": {"steps": 1, "prompts_per_step": 4, "output_dir": str(tmp_path / count)},
                         "log": {"progress": False, "report_to": []}})
        tok = build_char_tokenizer()
        trainer = Trainer(cfg, model=build_tiny_model(tok), tokenizer=tok, dataset=records, rewards=[scripted],
                          engine=ScriptedEngine(tok))
        order = iter([[0, 1, 2, 3], [4, 5, 6, 7]])
        trainer.rollouts.sampler.draw = lambda n, order=order: next(order)
        batch, info = trainer.rollouts.collect()
        assert info["rollout/draws"] == 2.0 and info["rollout/valid_groups_counted"] == 2.0
        batches[count] = batch.prompt_index.tolist()
    assert batches["kept"] == [1, 1, 4, 4, 0, 0, 2, 2]  # filled with the first degenerate groups drawn
    assert batches["gathered"] == [1, 1, 4, 4, 5, 5, 6, 6]  # filled with the last draw's

"""The rollout sampler: exact draws from softmax(logits / T) (top-k / top-p when asked), by inverse CDF."""

import math

import pytest
import torch

from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams
from gpgrl.rollout.sampling import ExactSampler, sample_tokens

LARGEST_BELOW_ONE = 1.0 - 2.0**-53


def draw(logits, u, **kw):
    return sample_tokens(torch.tensor([logits], dtype=torch.float32), kw.pop("temperature", 1.0),
                         uniform=torch.tensor([[u]], dtype=torch.float64), **kw).item()


def test_inverse_cdf_bins_by_hand():
    # logits (0, ln 3): probabilities 1/4, 3/4 -> token 0 owns [0, 0.25), token 1 owns [0.25, 1)
    logits = [0.0, math.log(3.0)]
    assert [draw(logits, u) for u in (0.0, 0.24, 0.26, 0.99)] == [0, 0, 1, 1]
    # at T = 2 the logits halve: p0 = 1 / (1 + sqrt 3) = 0.366
    assert [draw(logits, u, temperature=2.0) for u in (0.35, 0.38)] == [0, 1]


def test_never_draws_minus_inf_even_at_the_top_of_the_unit_interval():
    assert draw([1.0, float("-inf"), 2.0, float("-inf")], LARGEST_BELOW_ONE) == 2
    assert draw([1.0, float("-inf"), 2.0, float("-inf")], 0.0) == 0
    assert draw([float("-inf"), 5.0, float("-inf")], 0.5) == 1


def test_top_k_keeps_the_k_largest():
    # logits 3, 2, 1, 0 with k = 2: only tokens 0 and 1, in the ratio e : 1
    p0 = math.e / (math.e + 1)
    assert draw([3.0, 2.0, 1.0, 0.0], p0 - 0.01, top_k=2) == 0
    assert draw([3.0, 2.0, 1.0, 0.0], p0 + 0.01, top_k=2) == 1
    assert draw([3.0, 2.0, 1.0, 0.0], LARGEST_BELOW_ONE, top_k=2) == 1
    assert draw([0.0, 1.0, 2.0, 3.0], 0.0, top_k=1) == 3  # top-1 is the argmax wherever it is


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = [math.log(0.2), math.log(0.5), math.log(0.3)]  # token 1 (0.5), then 2 (0.3), then 0 (0.2)
    # top_p 0.6: {1, 2} (0.5 < 0.6, 0.8 >= 0.6), renormalised 0.625 / 0.375
    assert draw(logits, 0.62, top_p=0.6) == 1
    assert draw(logits, 0.63, top_p=0.6) == 2
    assert draw(logits, LARGEST_BELOW_ONE, top_p=0.6) == 2
    assert draw(logits, LARGEST_BELOW_ONE, top_p=0.45) == 1  # the first token alone reaches 0.45
    assert draw(logits, LARGEST_BELOW_ONE, top_p=0.85) == 0  # 0.8 < 0.85: all three
    # top-k then top-p, as transformers and vLLM apply them: k = 2 leaves 0.5 / 0.3 -> 0.625 / 0.375
    assert draw(logits, LARGEST_BELOW_ONE, top_k=2, top_p=0.6) == 1


def test_frequencies_match_the_tempered_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, float("-inf")])
    n = 40_000
    for temperature, top_k in ((1.0, 0), (0.5, 0), (1.5, 3)):
        tokens = sample_tokens(logits.repeat(n, 1), temperature, top_k)
        counts = torch.bincount(tokens, minlength=5).double()
        z = logits / temperature
        if top_k:
            z = z.masked_fill(z < z.topk(top_k).values[-1], float("-inf"))
        p = torch.softmax(z.double(), -1)
        sigma = (n * p * (1 - p)).sqrt().clamp_min(1.0)
        assert counts[4] == 0
        assert ((counts - n * p).abs() <= 5 * sigma).all(), (temperature, top_k, counts.tolist(), (n * p).tolist())


def test_input_checks():
    with pytest.raises(ValueError, match="temperature > 0"):
        sample_tokens(torch.zeros(1, 3), 0.0)
    with pytest.raises(ValueError, match="float32 or float64"):
        sample_tokens(torch.zeros(1, 3, dtype=torch.bfloat16), 1.0)
    with pytest.raises(ValueError, match="temperature > 0"):
        ExactSampler(0.0)


def test_processor_returns_scores_whose_argmax_is_the_draw():
    torch.manual_seed(3)
    scores = torch.randn(6, 50)
    expected = (torch.manual_seed(7), sample_tokens(scores.clone(), 0.8, 5))[1]
    torch.manual_seed(7)
    out = ExactSampler(0.8, top_k=5)(torch.zeros(6, 1, dtype=torch.long), scores)
    assert torch.equal(out.argmax(-1), expected)
    assert torch.isinf(out).sum() == 6 * 49


def _first_tokens(model, tok, n, seed, temperature=1.0):
    prompt = tok("12+34=")["input_ids"]
    torch.manual_seed(seed)
    out = HFGenerateEngine(model, tok).generate([prompt], SamplingParams(max_new_tokens=1, temperature=temperature), n)
    return out.completion_ids[:, 0]


def test_engine_samples_the_models_tempered_distribution(tiny):
    model, tok = tiny
    n, temperature = 3000, 0.7
    tokens = _first_tokens(model, tok, n, seed=0, temperature=temperature)
    with torch.no_grad():
        ids = torch.tensor([tok("12+34=")["input_ids"]])
        p = torch.softmax(model(ids).logits[0, -1].double() / temperature, -1)
    freq = torch.bincount(tokens, minlength=p.numel()).double() / n
    total_variation = 0.5 * (freq - p).abs().sum().item()
    assert total_variation < 0.12, total_variation  # sampling noise at n = 3000 is about 0.07 here
    assert len(set(tokens.tolist())) > 60  # no hidden top-k: far more than transformers' default 50 tokens


def test_engine_prefills_each_groups_prompt_once(tiny):
    """Rows of a group share their prompt: it runs once per group (a chunk that splits a group: every row),
    and the samples are the ones ``generate``'s own prefill of every row gives (same seed, same tokens)."""
    model, tok = tiny
    prompts = [tok(q)["input_ids"] for q in ("12+34=", "7*8=", "100-1=")]
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    shapes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    width = max(len(p) for p in prompts)
    try:
        for batch_size, first in ((None, (3, width - 1)), (8, (2, width - 1)), (6, (6, width))):
            out = {}
            for share in (True, False):
                shapes.clear()
                torch.manual_seed(5)
                out[share] = HFGenerateEngine(model, tok, batch_size=batch_size, share_prompts=share).generate(
                    prompts, params, 4)
                if share:
                    assert shapes[0] == first and shapes[1][1] == 1, (batch_size, shapes[:2])
                else:
                    assert shapes[0] == (batch_size or 12, width), (batch_size, shapes[0])
            assert torch.equal(out[True].completion_ids, out[False].completion_ids), batch_size
            assert torch.equal(out[True].completion_mask, out[False].completion_mask), batch_size
    finally:
        hook.remove()


def test_engine_ignores_a_repetition_penalty_in_the_models_generation_config(tiny):
    model, tok = tiny
    plain = _first_tokens(model, tok, 200, seed=1)
    model.generation_config.repetition_penalty = 50.0  # would push the prompt's tokens far down
    model.generation_config.no_repeat_ngram_size = 1
    assert torch.equal(_first_tokens(model, tok, 200, seed=1), plain)


def test_two_level_search_over_a_large_vocabulary():
    from gpgrl.rollout.sampling import BLOCK

    V = 5 * BLOCK + 37  # blocks of BLOCK plus a short tail
    logits = torch.full((1, V), float("-inf"))
    hot = [3, BLOCK + 5, 3 * BLOCK, V - 1]  # four equally likely tokens, one of them in the tail
    logits[0, hot] = 0.0
    for k, token in enumerate(hot):
        for u in (k / 4 + 1e-9, (k + 1) / 4 - 1e-9):
            assert sample_tokens(logits.clone(), 1.0, uniform=torch.tensor([[u]], dtype=torch.float64)).item() == token
    assert sample_tokens(logits.clone(), 1.0, uniform=torch.tensor([[LARGEST_BELOW_ONE]], dtype=torch.float64)).item() == V - 1
    logits[0, V - 1] = float("-inf")  # now the last live token is mid-vocabulary
    assert sample_tokens(logits.clone(), 1.0, uniform=torch.tensor([[LARGEST_BELOW_ONE]], dtype=torch.float64)).item() == 3 * BLOCK
    # frequencies over a large random vocabulary match the softmax
    torch.manual_seed(0)
    logits = torch.randn(V) * 3
    n = 20_000
    counts = torch.bincount(sample_tokens(logits.repeat(n, 1), 1.0), minlength=V).double()
    p = torch.softmax(logits.double(), -1)
    top = p.topk(20).indices  # the likely tokens, each checked
    sigma = (n * p[top] * (1 - p[top])).sqrt()
    assert ((counts[top] - n * p[top]).abs() <= 5 * sigma).all()
    assert 0.5 * (counts / n - p).abs().sum() < 0.1


def test_engine_never_samples_suppressed_tokens(tiny):
    """generate's own processors (here suppress_tokens, as a vision model's image placeholders) run before
    the sampler, so their -inf logits are never drawn."""
    model, tok = tiny
    prompt = tok("12+34=")["input_ids"]
    with torch.no_grad():
        likely = model(torch.tensor([prompt])).logits[0, -1].topk(40).indices.tolist()
    engine = HFGenerateEngine(model, tok)
    engine.suppress = likely
    torch.manual_seed(0)
    out = engine.generate([prompt], SamplingParams(max_new_tokens=1, temperature=1.0), 500)
    assert not set(out.completion_ids[:, 0].tolist()) & set(likely)

"""Log-probs of completion tokens: the kernels (``token_logprobs``, ``token_entropy``, ``head_logprobs``)
and ``completion_logprobs`` on tiny real transformers models, fused path against the plain one.

Tolerances. float32: the fused path sums in other orders (a chunk's logsumexp, the weight's gradient
over chunks), so values agree to float32 rounding: rtol 1e-5 / atol 1e-6 on log-probs and entropy,
1e-5 relative to the largest gradient entry. bfloat16: log-probs and entropy come from the same bf16
logits in float32 (atol 1e-5); the gradients of the head's weight and bias differ by a few bf16 steps
(the plain path rounds dL/dlogits to bf16 before summing over positions, the fused one sums in float32),
so they are compared with a float64 computation instead: the fused error must not exceed the plain
path's, and the two must agree to 2 % of the largest entry (bf16 keeps 8 bits: one step is 0.4-0.8 %).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gpgrl.models import head_logprobs, token_entropy, token_logprobs


def plain_head(hidden, weight, bias, tokens):
    """The computation the fused kernel replaces: whole logits, float32 log-softmax, gather (float64 in
    float64, as the reference of the bf16 test)."""
    z = F.linear(hidden, weight, bias)  # [B, T, V]
    logp = torch.log_softmax(z if z.dtype == torch.float64 else z.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(-1).detach()


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest entry of ``b``."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30))


# ---------------------------------------------------------------------------------------------
# token_logprobs / token_entropy: log-probs of logits the model has made
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 100])
def test_token_logprobs_matches_log_softmax(chunk_size):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, 11, generator=g) * 4  # B = 5 is not a multiple of 2 or 4
    tokens = torch.randint(0, 11, (5, 3), generator=g)
    expected = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    out = token_logprobs(logits, tokens, chunk_size)  # positional: the chunk argument's name may change
    assert out.shape == (5, 3) and out.dtype == torch.float32
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_token_logprobs_gradient_matches_log_softmax():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 7, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 7, (3, 4), generator=g)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    (token_logprobs(a, tokens, 2) * w).sum().backward()
    (torch.log_softmax(b, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).float() * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_token_logprobs_bf16():
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(6, 5, 32, generator=g) * 3).to(torch.bfloat16)
    tokens = torch.randint(0, 32, (6, 5), generator=g)
    out = token_logprobs(logits, tokens)
    assert out.dtype == torch.float32
    # Computed in float32 from the (exactly representable) bf16 values:
    exact = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(out, exact, rtol=1e-5, atol=1e-5)
    # ... and close to a bf16 log_softmax, up to bf16's ~3 significant digits.
    in_bf16 = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).float()
    assert torch.allclose(out, in_bf16, rtol=2e-2, atol=5e-2)
    # The gradient w.r.t. bf16 logits is bf16 and matches the float32 reference up to bf16 rounding.
    w = torch.randn(6, 5, generator=g)
    x = logits.clone().requires_grad_()
    (token_logprobs(x, tokens) * w).sum().backward()
    ref = logits.float().requires_grad_()
    (torch.log_softmax(ref, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * w).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    assert torch.allclose(x.grad.float(), ref.grad, rtol=2e-2, atol=1e-2)


def test_token_entropy():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 3, 9, generator=g) * 2
    p = torch.softmax(logits, -1)
    direct = -(p * torch.log(p)).sum(-1)
    ent = token_entropy(logits, 2)
    assert ent.shape == (5, 3)
    assert torch.allclose(ent, direct, rtol=1e-5, atol=1e-6)
    assert torch.allclose(token_entropy(torch.zeros(1, 2, 8)), torch.full((1, 2), math.log(8)))
    peaked = torch.tensor([[[100.0, 0.0, 0.0]]])
    assert token_entropy(peaked).item() == pytest.approx(0.0, abs=1e-6)
    assert not token_entropy(logits.requires_grad_()).requires_grad
    ent_bf16 = token_entropy(logits.detach().to(torch.bfloat16))
    assert ent_bf16.dtype == torch.float32
    assert torch.allclose(ent_bf16, direct, rtol=2e-2, atol=2e-2)


def test_token_logprobs_hand_gradient():
    # d logp / d logits = onehot(token) - softmax. Row 0: logits (0, 0), token 0: p = (1/2, 1/2) ->
    # (1/2, -1/2). Row 1: logits (1, 3), token 1: p1 = e / (e + e^3) = 1 / (1 + e^2) = 0.1192 -> (-0.1192, 0.1192).
    logits = torch.tensor([[[0.0, 0.0], [1.0, 3.0]]], requires_grad=True)
    token_logprobs(logits, torch.tensor([[0, 1]])).sum().backward()
    q = 1 / (1 + math.e**2)
    torch.testing.assert_close(logits.grad, torch.tensor([[[0.5, -0.5], [-q, q]]]))


# ---------------------------------------------------------------------------------------------
# head_logprobs: hidden states -> head -> log-softmax, a chunk at a time
# ---------------------------------------------------------------------------------------------


def test_head_logprobs_hand_values_and_gradients():
    # Head W = [[0, 1], [0, 3]], bias b = (1, -1) - hidden states x0 = (1, 0), x1 = (0, 1):
    # logits z0 = W x0 + b = (1, -1), z1 = W x1 + b = (2, 2). Tokens (0, 1).
    # logp0 = 1 - log(e + e^-1) = -log(1 + e^-2); logp1 = -log 2.
    # dlogp/dz (onehot - p): row 0: p0 = 1 / (1 + e^-2) = 0.8808 -> (1 - p0, -(1 - p0)) = (q, -q), q = 0.1192;
    # row 1: p = (1/2, 1/2) -> (-1/2, 1/2).
    # dL/dW = sum_rows outer(g, x) = [[q, -1/2], [-q, 1/2]]; dL/db = sum_rows g = (q - 1/2, 1/2 - q);
    # dL/dx0 = g0 @ W = q * (0, 1) - q * (0, 3) = (0, -2q); dL/dx1 = -1/2 * (0, 1) + 1/2 * (0, 3) = (0, 1).
    q = 1 / (1 + math.e**2)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    w = torch.tensor([[0.0, 1.0], [0.0, 3.0]], requires_grad=True)
    b = torch.tensor([1.0, -1.0], requires_grad=True)
    logp, entropy = head_logprobs(x, w, b, torch.tensor([[0, 1]]), chunk_tokens=1, with_entropy=True)
    torch.testing.assert_close(logp, torch.tensor([[-math.log(1 + math.e**-2), -math.log(2)]]))
    # entropy of row 1 (uniform over 2) is log 2; row 0: -(p log p + (1 - p) log(1 - p)), p = 1 - q
    h0 = -((1 - q) * math.log(1 - q) + q * math.log(q))
    torch.testing.assert_close(entropy, torch.tensor([[h0, math.log(2)]]))
    assert not entropy.requires_grad
    logp.sum().backward()
    torch.testing.assert_close(w.grad, torch.tensor([[q, -0.5], [-q, 0.5]]))
    torch.testing.assert_close(b.grad, torch.tensor([q - 0.5, 0.5 - q]))
    torch.testing.assert_close(x.grad, torch.tensor([[[0.0, -2 * q], [0.0, 1.0]]]))


def _head_case(seed: int, B: int, T: int, H: int = 16, V: int = 37, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g)
    weight = torch.randn(V, H, generator=g) * 0.5
    b = torch.randn(V, generator=g) if bias else None
    tokens = torch.randint(0, V, (B, T), generator=g)
    w = torch.randn(B, T, generator=g)  # a weighted sum, so that every position's gradient differs
    return hidden, weight, b, tokens, w


def _grads(fn, hidden, weight, bias, tokens, w, dtype):
    leaves = [t.to(dtype).requires_grad_() if t is not None else None for t in (hidden, weight, bias)]
    logp, entropy = fn(*leaves, tokens)
    (logp * w).sum().backward()
    return logp, entropy, [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("B", "T", "chunk"), [(3, 5, 1), (3, 5, 4), (3, 5, 7), (2, 3, 64), (1, 1, 256)])
def test_head_logprobs_equals_plain_float32(B, T, chunk, bias):
    """Chunks that do not divide B * T = 15, one chunk larger than B * T, a single position."""
    case = _head_case(B * 100 + T, B, T, bias=bias)
    lp_ref, ent_ref, g_ref = _grads(plain_head, *case, torch.float32)
    lp, ent, g = _grads(lambda *a: head_logprobs(*a, chunk_tokens=chunk, with_entropy=True), *case, torch.float32)
    assert lp.shape == ent.shape == (B, T) and lp.dtype == ent.dtype == torch.float32
    torch.testing.assert_close(lp, lp_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ent, ent_ref, rtol=1e-5, atol=1e-6)
    for name, a, ref in zip(("hidden", "weight", "bias"), g, g_ref):
        if ref is None:
            assert a is None
            continue
        assert a.dtype == torch.float32 and a.shape == ref.shape
        assert max_rel(a, ref) < 1e-5, name


def test_head_logprobs_bfloat16_is_as_exact_as_the_plain_path():
    case = _head_case(7, 4, 9, H=32, V=300)
    rounded = [t.to(torch.bfloat16).double() if t is not None and t.is_floating_point() else t for t in case]
    exact = _grads(plain_head, *rounded, torch.float64)  # float64 throughout, from the same bf16 inputs
    lp_ref, ent_ref, g_ref = _grads(plain_head, *case, torch.bfloat16)
    lp, ent, g = _grads(lambda *a: head_logprobs(*a, chunk_tokens=5, with_entropy=True), *case, torch.bfloat16)
    # the same bf16 logits (each chunk's matmul rounds as the whole one does), then float32 on both sides
    torch.testing.assert_close(lp, lp_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent, ent_ref, rtol=0, atol=1e-5)
    for name, a, ref, truth in zip(("hidden", "weight", "bias"), g, g_ref, exact[2]):
        assert a.dtype == torch.bfloat16, name
        assert max_rel(a, truth) <= max_rel(ref, truth) + 1e-3, name  # no less exact than the plain path
        assert max_rel(a, ref) < 2e-2, name


def test_head_logprobs_frozen_head_gives_no_weight_gradient():
    """LoRA freezes the head: only the hidden states get a gradient (and no [V, H] accumulator is made)."""
    hidden, weight, bias, tokens, w = _head_case(3, 2, 6)
    x = hidden.clone().requires_grad_()
    (head_logprobs(x, weight, bias, tokens, chunk_tokens=4)[0] * w).sum().backward()
    x_ref = hidden.clone().requires_grad_()
    (plain_head(x_ref, weight, bias, tokens)[0] * w).sum().backward()
    assert weight.grad is None and bias.grad is None
    assert max_rel(x.grad, x_ref.grad) < 1e-5


def test_head_logprobs_follows_autocast():
    """Under autocast (float32 weights, bf16 compute) the head's matmul runs in bf16 as lm_head's would,
    in forward and backward; gradients come back in the leaves' float32."""
    hidden, weight, bias, tokens, w = _head_case(4, 3, 4, H=32, V=200)
    out = []
    for fn in (plain_head, lambda *a: head_logprobs(*a, chunk_tokens=3, with_entropy=True)):
        leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp, _ = fn(*leaves, tokens)
        (logp * w).sum().backward()
        out.append((logp, [t.grad for t in leaves]))
    (lp_ref, g_ref), (lp, g) = out
    torch.testing.assert_close(lp, lp_ref, rtol=0, atol=1e-5)
    assert (lp - plain_head(hidden, weight, bias, tokens)[0]).abs().max() > 1e-4  # bf16 did round the logits
    for a, ref in zip(g, g_ref):
        assert a.dtype == torch.float32 and max_rel(a, ref) < 2e-2


@pytest.mark.parametrize(("shapes", "match"), [
    (((2, 3, 4), (5, 4), (5,), (2, 4)), "tokens"),
    (((2, 3, 4), (5, 6), None, (2, 3)), "weight must be"),
    (((2, 3, 4), (5, 4), (6,), (2, 3)), "bias must be"),
])
def test_head_logprobs_shape_errors(shapes, match):
    h, w, b, t = shapes
    with pytest.raises(ValueError, match=match):
        head_logprobs(torch.zeros(h), torch.zeros(w), None if b is None else torch.zeros(b),
                      torch.zeros(t, dtype=torch.long))

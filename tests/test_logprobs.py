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


# ---------------------------------------------------------------------------------------------
# completion_logprobs on tiny real transformers models: fused == plain
# ---------------------------------------------------------------------------------------------

V, HIDDEN = 61, 32  # V appears in no other dimension of these models, so a [..., V] tensor is a logits tensor
ARCHS = ("llama", "llama_tied", "qwen2", "olmo2", "mistral", "qwen3", "gemma3", "phi")


def tiny_causal_lm(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """A 2-layer causal LM of the given transformers architecture with random weights."""
    import transformers

    common = dict(vocab_size=V, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    common.update(overrides)
    config = {
        "llama": lambda: transformers.LlamaConfig(**common),
        "llama_tied": lambda: transformers.LlamaConfig(tie_word_embeddings=True, **common),
        "qwen2": lambda: transformers.Qwen2Config(**common),  # q/k/v biases
        "olmo2": lambda: transformers.Olmo2Config(**common),
        "mistral": lambda: transformers.MistralConfig(**common),
        "qwen3": lambda: transformers.Qwen3Config(head_dim=8, **common),
        "gemma3": lambda: transformers.Gemma3TextConfig(head_dim=8, **common),  # tied; no soft-capping by default
        "phi": lambda: transformers.PhiConfig(**common),  # lm_head has a bias
        "gemma2": lambda: transformers.Gemma2Config(head_dim=8, **common),  # final_logit_softcapping = 30
        "granite": lambda: transformers.GraniteConfig(logits_scaling=4.0, **common),
        "cohere": lambda: transformers.CohereConfig(**common),  # logit_scale = 0.0625
    }[arch]()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.to(dtype)


def rollout_batch(seed: int = 0, B: int = 3, P: int = 5, T: int = 6):
    """Left-padded prompts of lengths P, P-2, P-4 and right-padded completions of lengths T, T-3, 1."""
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(3, V, (B, P), generator=g)
    completion_ids = torch.randint(3, V, (B, T), generator=g)
    prompt_mask = (torch.arange(P) >= torch.tensor([0, 2, 4])[:B, None]).long()  # [B, P]
    completion_mask = (torch.arange(T) < torch.tensor([T, T - 3, 1])[:B, None]).long()  # [B, T]
    prompt_ids = torch.where(prompt_mask.bool(), prompt_ids, torch.zeros_like(prompt_ids))  # pad id 0
    completion_ids = torch.where(completion_mask.bool(), completion_ids, torch.zeros_like(completion_ids))
    weights = torch.randn(B, T, generator=g)
    return prompt_ids, prompt_mask, completion_ids, completion_mask, weights


def logprobs_and_grads(model, batch, **kwargs):
    """Log-probs, entropy and every parameter's gradient of sum(w * logp) over the completion tokens."""
    prompt_ids, prompt_mask, completion_ids, completion_mask, weights = batch
    model.zero_grad(set_to_none=True)
    from gpgrl.models import completion_logprobs

    logp, entropy = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                        with_entropy=True, **kwargs)
    (logp * weights * completion_mask).sum().backward()
    grads = {n.removeprefix("module."): p.grad.clone()  # DDP's names, as the wrapped model's
             for n, p in model.named_parameters() if p.grad is not None}
    return logp, entropy, grads


def assert_same_logprobs(fused, plain, mask, *, rtol=1e-5, atol=1e-6, grad_rel=1e-5):
    (lp_f, ent_f, g_f), (lp_p, ent_p, g_p) = fused, plain
    m = mask.bool()
    torch.testing.assert_close(lp_f[m], lp_p[m], rtol=rtol, atol=atol)
    torch.testing.assert_close(ent_f[m], ent_p[m], rtol=rtol, atol=atol)
    assert g_f.keys() == g_p.keys() and len(g_f) > 0
    for name in g_p:
        assert max_rel(g_f[name], g_p[name]) <= grad_rel, name


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_equals_plain_on_real_models(arch):
    from gpgrl.models import fusable_head

    model = tiny_causal_lm(arch)
    head, reason = fusable_head(model)
    assert head is model.get_output_embeddings() and reason is None
    if arch in ("llama_tied", "gemma3"):
        assert head.weight is model.get_input_embeddings().weight  # tied: one parameter, two gradients
    if arch == "phi":
        assert head.bias is not None
    batch = rollout_batch()
    fused = logprobs_and_grads(model, batch, fused=True, chunk_tokens=4)  # 4 does not divide B * T = 18
    plain = logprobs_and_grads(model, batch, fused=False)
    assert_same_logprobs(fused, plain, batch[3])
    assert len(fused[2]) == len(list(model.parameters()))  # every parameter got its gradient
    auto = logprobs_and_grads(model, batch, chunk_tokens=64)  # auto: fused; one chunk larger than B * T
    assert_same_logprobs(auto, plain, batch[3])


def test_head_logprobs_scale_is_softmax_of_scaled_logits():
    """scale = 1 / temperature: log softmax(scale * z), with the chain rule's extra factor in every gradient."""
    case = _head_case(7, 3, 5, bias=True)
    scale = 1 / 0.6

    def scaled_plain(hidden, weight, bias, tokens):
        z = (hidden @ weight.T + bias).float() * scale
        logp = torch.log_softmax(z, -1)
        return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(-1).detach()

    lp_ref, ent_ref, g_ref = _grads(scaled_plain, *case, torch.float32)
    lp, ent, g = _grads(lambda *a: head_logprobs(*a, chunk_tokens=4, with_entropy=True, scale=scale), *case,
                        torch.float32)
    torch.testing.assert_close(lp, lp_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ent, ent_ref, rtol=1e-5, atol=1e-6)
    for name, a, ref in zip(("hidden", "weight", "bias"), g, g_ref):
        assert max_rel(a, ref) < 1e-5, name
    # and it is not the unscaled computation
    assert (lp - _grads(plain_head, *case, torch.float32)[0]).abs().max() > 1e-2


def test_head_logprobs_scale_hand_values():
    # One position, logits z = (0, ln 3); temperature 1/2 (scale 2): softmax(2z) = (1, 9) / 10.
    # Token 1: logp = log 0.9; d logp / d z = scale * (onehot - p) = 2 * (-0.1, 0.1) = (-0.2, 0.2).
    z = torch.tensor([[[0.0, math.log(3)]]], requires_grad=True)
    eye = torch.eye(2)  # the head is the identity: logits = hidden
    logp, _ = head_logprobs(z, eye, None, torch.tensor([[1]]), scale=2.0)
    torch.testing.assert_close(logp, torch.tensor([[math.log(0.9)]]))
    logp.sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([[[-0.2, 0.2]]]))


@pytest.mark.parametrize("fused", [True, False])
def test_completion_logprobs_temperature_is_the_sampled_distribution(fused):
    """Both paths give log softmax(logits / T) of the model's own logits, and T = 1 or 0 changes nothing."""
    model = tiny_causal_lm("qwen2")
    prompt_ids, prompt_mask, completion_ids, completion_mask, weights = batch = rollout_batch()
    T = completion_ids.shape[1]
    got = logprobs_and_grads(model, batch, fused=fused, temperature=0.7)
    # the reference: the whole logits, divided by the temperature, a float32 log-softmax
    model.zero_grad(set_to_none=True)
    from gpgrl.models.logprobs import position_ids_from_mask

    ids = torch.cat([prompt_ids, completion_ids], 1)
    mask = torch.cat([prompt_mask, completion_mask], 1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    logp_all = torch.log_softmax(logits[:, -(T + 1):-1].float() / 0.7, -1)
    ref_lp = logp_all.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    ref_ent = -(logp_all.exp() * logp_all).sum(-1).detach()
    (ref_lp * weights * completion_mask).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert_same_logprobs(got, (ref_lp, ref_ent, ref_grads), completion_mask)
    one = logprobs_and_grads(model, batch, fused=fused)
    for t in (1.0, 0.0):  # 0 = greedy: nothing to rescale
        torch.testing.assert_close(logprobs_and_grads(model, batch, fused=fused, temperature=t)[0], one[0])
    with pytest.raises(ValueError, match="temperature"):
        logprobs_and_grads(model, batch, fused=fused, temperature=-1.0)


def test_fused_equals_plain_in_bfloat16():
    model = tiny_causal_lm("llama", dtype=torch.bfloat16)
    batch = rollout_batch(1)
    fused = logprobs_and_grads(model, batch, fused=True, chunk_tokens=5)
    plain = logprobs_and_grads(model, batch, fused=False)
    # the same bf16 logits on both paths, then float32; gradients to a few bf16 steps (module docstring)
    assert_same_logprobs(fused, plain, batch[3], rtol=0, atol=1e-5, grad_rel=2e-2)


class LogitsRecorder(torch.overrides.TorchFunctionMode):
    """Records, over every torch call, the most rows a tensor whose last dimension is V had, and the
    shapes of the [B, L, V] ones (a causal LM's logits; the fused kernel's chunks are [rows, V])."""

    def __init__(self, model):
        super().__init__()
        self.max_rows, self.logits_shapes = 0, set()
        self.weights = {p.untyped_storage().data_ptr() for p in model.parameters()}  # views of them (W.T) are no logits

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == V \
                    and t.untyped_storage().data_ptr() not in self.weights:
                self.max_rows = max(self.max_rows, t.numel() // V)
                if t.dim() == 3:
                    self.logits_shapes.add(tuple(t.shape))
        return out


def test_fused_path_never_makes_the_whole_logits():
    """Forward and backward: no [.., V] tensor has more than chunk_tokens rows (the plain path's has
    B * (T + 1)), and the model's own logits are [B, 0, V]."""
    model = tiny_causal_lm("llama_tied")
    batch = rollout_batch()
    B, T = batch[2].shape
    recorded = {}
    for fused in (True, False):
        with LogitsRecorder(model) as rec:
            logprobs_and_grads(model, batch, fused=fused, chunk_tokens=4)
        recorded[fused] = rec.max_rows, rec.logits_shapes
    assert recorded[True] == (4, {(B, 0, V)})
    assert recorded[False][0] == B * (T + 1) and (B, T + 1, V) in recorded[False][1]


def test_hooked_head_falls_back():
    """A forward hook on the head (offloading, a user's probe) could change what it returns: plain path."""
    from gpgrl.models import fusable_head

    model = tiny_causal_lm("llama")
    model.get_output_embeddings().register_forward_hook(lambda m, i, o: o)
    assert "forward hooks" in fusable_head(model)[1]


@pytest.mark.parametrize(("arch", "overrides", "why"), [
    ("gemma2", {"final_logit_softcapping": 0.5}, "final_logit_softcapping=0.5"),  # a cap the tiny logits feel
    ("granite", {}, "logits_scaling=4.0"),
    ("cohere", {}, "logit_scale=0.0625"),
])
def test_models_that_edit_their_logits_fall_back(arch, overrides, why):
    """Soft-capped or scaled logits: auto takes the plain path, whose log-probs are the model's own."""
    from gpgrl.models import completion_logprobs, fusable_head

    model = tiny_causal_lm(arch, **overrides).eval()
    head, reason = fusable_head(model)
    assert head is None and why in reason
    prompt_ids, prompt_mask, completion_ids, completion_mask, _ = rollout_batch(B=1)
    with torch.no_grad():
        logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
        own = torch.log_softmax(model(torch.cat([prompt_ids, completion_ids], 1)).logits.float(), -1)
        own = own[0, prompt_ids.shape[1] - 1 : -1].gather(-1, completion_ids[0, :, None]).squeeze(-1)
        # ... and they differ from what the head alone would give: the fall-back matters
        hidden = model(torch.cat([prompt_ids, completion_ids], 1), output_hidden_states=True).hidden_states[-1]
        head_only, _ = head_logprobs(hidden[:, prompt_ids.shape[1] - 1 : -1], model.get_output_embeddings().weight,
                                     None, completion_ids)
    torch.testing.assert_close(logp[0], own, rtol=1e-5, atol=1e-5)
    assert (head_only[0] - own).abs().max() > 1e-3
    with pytest.raises(ValueError, match=f"fused=True, but .*{why}"):
        completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, fused=True)


@pytest.mark.parametrize("arch", ["llama", "llama_tied"])
def test_lora_model_takes_the_fused_path_with_identical_lora_gradients(arch):
    """peft's "all-linear" leaves lm_head alone: the fused path runs through the peft model's forward and
    the LoRA parameters (the only trainable ones) get the plain path's gradients."""
    pytest.importorskip("peft")
    from gpgrl.models import apply_lora, fusable_head

    model = apply_lora(tiny_causal_lm(arch), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    for name, p in model.named_parameters():  # LoRA's B starts at zero: give it values, so gradients of A count
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(len(name)))
    head, reason = fusable_head(model)
    assert reason is None and type(head) is torch.nn.Linear and not head.weight.requires_grad
    batch = rollout_batch(2)
    fused = logprobs_and_grads(model, batch, fused=True, chunk_tokens=5)
    plain = logprobs_and_grads(model, batch, fused=False)
    assert_same_logprobs(fused, plain, batch[3])
    assert fused[2] and all("lora_" in name for name in fused[2])  # frozen base: no weight gradient at all
    assert any("lora_A" in n for n in fused[2]) and any("lora_B" in n for n in fused[2])


def test_lora_on_the_head_falls_back():
    pytest.importorskip("peft")
    from gpgrl.models import apply_lora, fusable_head

    model = apply_lora(tiny_causal_lm("llama"), r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "lm_head"])
    head, reason = fusable_head(model)
    assert head is None and "not a plain nn.Linear" in reason and "peft" in reason
    batch = rollout_batch(3)
    auto = logprobs_and_grads(model, batch)  # the plain path, through peft's wrapped head
    plain = logprobs_and_grads(model, batch, fused=False)
    assert_same_logprobs(auto, plain, batch[3], rtol=0, atol=0, grad_rel=0)
    assert any("lm_head.lora" in name for name in auto[2])


def test_ddp_wrapped_model_takes_the_fused_path(process_group):
    """The forward runs through DDP's wrapper (its gradient hooks see the fused gradients): same
    gradients as the plain path on the unwrapped model."""
    from torch.nn.parallel import DistributedDataParallel

    from gpgrl.models import fusable_head

    model = tiny_causal_lm("llama_tied")
    ddp = DistributedDataParallel(model)
    head, reason = fusable_head(ddp)
    assert reason is None and head is model.lm_head
    batch = rollout_batch(4)
    fused = logprobs_and_grads(ddp, batch, fused=True, chunk_tokens=4)
    plain = logprobs_and_grads(model, batch, fused=False)
    assert_same_logprobs(fused, plain, batch[3])


@pytest.mark.parametrize("kind", ["fsdp1", "fsdp2"])
def test_fsdp_sharded_model_falls_back(process_group, kind):
    """FSDP gathers parameters inside the forward only: the fused head would read a shard. Plain path."""
    from gpgrl.models import completion_logprobs, fusable_head

    model = tiny_causal_lm("llama")
    batch = rollout_batch(5)
    with torch.no_grad():
        expected, _ = completion_logprobs(model, *batch[:4], fused=False)
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

        # one process: nothing to shard (FSDP would switch to NO_SHARD itself, with a warning); the wrapper is
        # still FSDP's, which gathers its parameters inside the forward only
        wrapped = FullyShardedDataParallel(model, device_id=torch.device("cpu"),
                                       sharding_strategy=ShardingStrategy.NO_SHARD)
    else:
        from torch.distributed.fsdp import fully_shard

        wrapped = fully_shard(model)
    head, reason = fusable_head(wrapped)
    assert head is None and "sharded" in reason
    with torch.no_grad():
        logp, _ = completion_logprobs(wrapped, *batch[:4])
    m = batch[3].bool()
    torch.testing.assert_close(logp[m], expected[m], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="sharded"):
        completion_logprobs(wrapped, *batch[:4], fused=True)

"""``completion_logprobs(share_prompts=True)``: each distinct prompt runs once and its rows continue from its
KV cache. The same log-probs, entropies and gradients as running every whole row, on tiny real transformers
models of several architectures, fused and plain head paths; fewer tokens through the model; the cases
where it must not apply fall back to whole rows."""

import pytest
import torch

from gpgrl.models.logprobs import prompt_groups, prompt_sharing_blocker
from test_logprobs import ARCHS, V, assert_same_logprobs, logprobs_and_grads, tiny_causal_lm

GROUPS = (3, 2, 1)  # rows per distinct prompt, consecutive, as a batch holds a group's answers


def grouped_batch(seed: int = 0, P: int = 6, T: int = 5):
    """Three prompts of lengths P, P-2, P-4 (left-padded), repeated GROUPS times; every row its own
    right-padded completion (lengths T down to 1) and loss weight."""
    g = torch.Generator().manual_seed(seed)
    lengths = [P, P - 2, P - 4]
    prompts = [torch.randint(3, V, (n,), generator=g) for n in lengths]
    rows = [i for i, k in enumerate(GROUPS) for _ in range(k)]
    B = len(rows)
    prompt_ids = torch.zeros(B, P, dtype=torch.long)
    prompt_mask = torch.zeros(B, P, dtype=torch.long)
    for r, i in enumerate(rows):
        prompt_ids[r, P - lengths[i]:] = prompts[i]
        prompt_mask[r, P - lengths[i]:] = 1
    ends = torch.tensor([T, T - 1, 2, T, 1, T - 2])[:B]
    completion_mask = (torch.arange(T) < ends[:, None]).long()
    completion_ids = torch.randint(3, V, (B, T), generator=g) * completion_mask  # pad id 0
    weights = torch.randn(B, T, generator=g)
    return prompt_ids, prompt_mask, completion_ids, completion_mask, weights


def count_tokens(model):
    """A list that collects the number of token ids each forward call of ``model``'s embeddings sees."""
    seen: list[int] = []
    model.get_input_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0].numel()))
    return seen


def test_prompt_groups_by_hand():
    ids = torch.tensor([[0, 5], [0, 5], [7, 8], [0, 5]])
    first, inverse = prompt_groups(ids, (ids > 0).long())
    assert first.tolist() == [0, 2, 3] and inverse.tolist() == [0, 0, 1, 2]  # a prompt again later: a new run
    same_ids = torch.tensor([[0, 5], [0, 5]])
    assert prompt_groups(same_ids, torch.tensor([[0, 1], [1, 1]])) is None  # same ids, another mask: distinct


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prompts_equal_whole_rows(arch, fused):
    model = tiny_causal_lm(arch)
    assert prompt_sharing_blocker(model) is None
    batch = grouped_batch()
    seen = count_tokens(model)
    shared = logprobs_and_grads(model, batch, fused=fused, share_prompts=True, chunk_tokens=4)
    P, T, B = batch[0].shape[1], batch[2].shape[1], batch[0].shape[0]
    assert seen == [len(GROUPS) * P, B * T]  # each distinct prompt once, then every row's completion
    whole = logprobs_and_grads(model, batch, fused=fused)
    assert seen[2:] == [B * (P + T)]
    assert_same_logprobs(shared, whole, batch[3])
    assert len(shared[2]) == len(list(model.parameters()))


def test_temperature_and_a_group_split_by_a_micro_batch():
    """Rows 2-4 hold the end of one group and the start of the next (a micro-batch boundary inside groups)."""
    model = tiny_causal_lm("qwen2")
    batch = tuple(t[2:5] for t in grouped_batch(1))
    shared = logprobs_and_grads(model, batch, share_prompts=True, temperature=0.7)
    whole = logprobs_and_grads(model, batch, temperature=0.7)
    assert_same_logprobs(shared, whole, batch[3])


def test_lora_model_shares_with_the_same_lora_gradients():
    pytest.importorskip("peft")
    from gpgrl.models import apply_lora

    model = apply_lora(tiny_causal_lm("llama"), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    for name, p in model.named_parameters():  # LoRA's B starts at zero: give it values, so gradients of A count
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(len(name)))
    assert prompt_sharing_blocker(model) is None
    batch = grouped_batch(2)
    seen = count_tokens(model)
    shared = logprobs_and_grads(model, batch, share_prompts=True)
    assert len(seen) == 2
    assert_same_logprobs(shared, logprobs_and_grads(model, batch), batch[3])
    assert shared[2] and all("lora_" in name for name in shared[2])


def test_no_repeated_prompt_runs_whole_rows():
    model = tiny_causal_lm("llama")
    batch = tuple(t[[0, 3, 5]] for t in grouped_batch(3))  # three distinct prompts
    seen = count_tokens(model)
    logprobs_and_grads(model, batch, share_prompts=True)
    assert seen == [3 * (batch[0].shape[1] + batch[2].shape[1])]


def test_gradient_checkpointing_blocks_sharing():
    from gpgrl.models.loading import enable_activation_checkpointing

    model = tiny_causal_lm("llama")
    enable_activation_checkpointing(model)
    assert "gradient checkpointing" in prompt_sharing_blocker(model)
    batch = grouped_batch(4)
    seen = count_tokens(model)
    logprobs_and_grads(model, batch, share_prompts=True)
    assert len(seen) == 1


def test_ddp_wrapped_model_runs_whole_rows(process_group):
    """DDP's hooks expect one forward per backward: a wrapped model is not shared, and gives the same numbers."""
    from torch.nn.parallel import DistributedDataParallel

    model = tiny_causal_lm("llama_tied")
    ddp = DistributedDataParallel(model)
    assert "wrapped" in prompt_sharing_blocker(ddp)
    batch = grouped_batch(5)
    seen = count_tokens(model)
    wrapped = logprobs_and_grads(ddp, batch, share_prompts=True)
    assert len(seen) == 1
    assert_same_logprobs(wrapped, logprobs_and_grads(model, batch, share_prompts=True), batch[3])


def test_the_trainer_shares_each_groups_prompt(tmp_path):
    """A GPG step's update runs each prompt once per micro-batch: the policy's embeddings see the prompts of
    the distinct groups in each micro-batch, not G copies."""
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import ScriptedEngine, tiny_config

    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:has_one"}],
                      algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 1, "prompts_per_step": 8, "micro_batch_size": 8})
    tok = build_char_tokenizer()
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok, engine=ScriptedEngine(tok))
    calls: list[tuple[int, ...]] = []
    embed = trainer.acc.unwrap_model(trainer.model).get_input_embeddings()
    embed.register_forward_pre_hook(lambda _m, args: calls.append(tuple(args[0].shape)))
    trainer.train()
    G = cfg.rollout.group_size
    assert G > 1 and len(calls) % 2 == 0 and calls
    for prompts, completions in zip(calls[::2], calls[1::2]):  # micro-batches of whole groups: 1 prompt per G rows
        assert completions[0] in (G, 2 * G) and prompts[0] == completions[0] // G

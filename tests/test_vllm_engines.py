"""The vLLM engines against strict stand-ins of the vLLM surface they use (no GPU here).

The stand-ins refuse what real vLLM refuses and misbehave where real vLLM does when a client forgets
something; the payloads themselves are checked against real vLLM releases' code in
``tests/vllm_contract`` (``pytest -m vllm_contract``):

* the server engine: ``tests/test_vllm_server.py`` (it shares this module's sampling helpers);
* the colocated engine against a stand-in ``vllm.LLM`` that needs the launcher's ``RANK`` / ``LOCAL_RANK``,
  validates sampling settings, counts one image placeholder per image, and loads weights through
  ``apply_model``.

Tests against real vLLM on a GPU are marked ``gpu`` (and ``benchmarks/gpu_smoke.py``).
"""

from __future__ import annotations

import copy
import os
from types import SimpleNamespace

import pytest
import torch

from gpgrl.models.logprobs import completion_logprobs
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.rollout.engine import SamplingParams, left_pad
from gpgrl.rollout.vllm import EngineError, VLLMColocatedEngine, vllm_named_parameters

TOK = build_char_tokenizer()
EOS = TOK.eos_token_id


def sample(model, ids: list[int], n: int, max_tokens: int, temperature: float, seed: int):
    """n samples of up to max_tokens from ``model`` after ``ids``, with each token's sampling log-prob."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        seq, logps = list(ids), []
        for _ in range(max_tokens):
            with torch.no_grad():
                logits = model(torch.tensor([seq])).logits[0, -1].float() / temperature
            lp = torch.log_softmax(logits, -1)
            token = int(torch.multinomial(lp.exp(), 1, generator=gen))
            seq.append(token)
            logps.append(float(lp[token]))
            if token == EOS:
                break
        out.append((seq[len(ids):], logps))
    return out


def check_sampling(n, temperature, top_p, top_k):
    """What vLLM's SamplingParams refuses (vllm/sampling_params.py, 0.17-0.34)."""
    if not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be in [0, 2], got {temperature}.")
    if temperature == 0 and n > 1:
        raise ValueError(f"n must be 1 when using greedy sampling, got {n}.")
    if not 0 < top_p <= 1 or top_k < -1:
        raise ValueError("bad top_p / top_k")


def _step(model):
    """An optimizer step's worth of change: every parameter moves."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))


# --- colocated -------------------------------------------------------------------------------------------


class StandInSampling:
    """`vllm.SamplingParams` as strict as the real one on the fields the engine sets."""

    def __init__(self, **kw):
        check_sampling(kw["n"], kw["temperature"], kw["top_p"], kw["top_k"])
        self.__dict__.update(kw)


class StandInLLM:
    """`vllm.LLM` as far as the colocated engine can tell, backed by a tiny model (or a given one)."""

    def __init__(self, image_token_id=None, **kwargs):
        if kwargs.get("distributed_executor_backend") == "external_launcher":
            int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])  # vLLM's ExecutorWithExternalLauncher
        self.kwargs = kwargs
        self.model = build_tiny_model(TOK, seed=5).eval()
        self.image_token_id = image_token_id
        self.events: list[str] = []
        self.requests: list[dict] = []
        self.llm_engine = SimpleNamespace(reset_encoder_cache=lambda: self.events.append("reset_encoder"))

    def apply_model(self, func):
        return [func(SimpleNamespace(load_weights=self._load))]

    def _load(self, weights):
        state = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights:
                state[name].copy_(tensor)
        self.events.append("load")

    def generate(self, requests, sampling_params, use_tqdm=True):
        assert isinstance(sampling_params, StandInSampling)
        self.events.append("generate")
        outs = []
        for p, req in enumerate(requests):
            self.requests.append(req)
            images = (req.get("multi_modal_data") or {}).get("image", [])
            if self.image_token_id is not None:  # vLLM expands each single placeholder itself
                found = req["prompt_token_ids"].count(self.image_token_id)
                if found != len(images):
                    raise ValueError(f"{len(images)} images but {found} placeholder tokens (expanded twice)")
                continue
            samples = []
            for tokens, logps in sample(self.model, req["prompt_token_ids"], sampling_params.n,
                                        sampling_params.max_tokens, sampling_params.temperature, seed=31 * p):
                samples.append(SimpleNamespace(token_ids=tokens, logprobs=[
                    {t: SimpleNamespace(logprob=lp)} for t, lp in zip(tokens, logps)]))
            outs.append(SimpleNamespace(outputs=samples))
        if self.image_token_id is not None:  # image requests: fixed short answers
            outs = [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[5, EOS], logprobs=None)
                                             for _ in range(sampling_params.n)]) for _ in requests]
        return outs

    def sleep(self, level=1):
        self.events.append(f"sleep{level}")

    def wake_up(self):
        self.events.append("wake")

    def reset_prefix_cache(self):
        self.events.append("reset")


def colocated(**kw):
    return VLLMColocatedEngine("tiny", TOK, gpu_memory_utilization=0.25, llm_factory=lambda **a: StandInLLM(**a, **kw),
                               sampling_factory=StandInSampling)


def test_colocated_engine_generates_syncs_and_sleeps():
    engine = colocated()
    llm = engine.llm
    assert llm.kwargs["distributed_executor_backend"] == "external_launcher" and llm.kwargs["enable_sleep_mode"]
    prompts = [TOK("12+3=")["input_ids"], TOK("4+5=")["input_ids"]]
    batch = engine.generate(prompts, SamplingParams(max_new_tokens=5, temperature=1.0), num_samples=2)
    assert [batch.prompt_ids[r][batch.prompt_mask[r].bool()].tolist() for r in range(4)] == [prompts[0]] * 2 + [prompts[1]] * 2
    with torch.no_grad():
        mine, _ = completion_logprobs(llm.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(batch.sampling_logprobs[mask], mine[mask], atol=1e-4, rtol=1e-4)
    trainer_model = build_tiny_model(TOK, seed=0)
    _step(trainer_model)
    engine.sleep()  # the trainer's update
    engine.wake_up()
    engine.update_weights(trainer_model)
    for (name, p), (_, q) in zip(trainer_model.named_parameters(), llm.model.named_parameters()):
        assert torch.equal(p, q), name
    n_params = len(list(trainer_model.parameters()))
    # one parameter at a time, then fresh prefix and encoder caches (finding 2: stale image embeddings)
    assert llm.events[-n_params - 2 :] == ["load"] * n_params + ["reset", "reset_encoder"]
    assert "sleep1" in llm.events and llm.events.index("sleep1") < llm.events.index("wake")


def test_colocated_engine_sets_the_launcher_variables_a_plain_process_lacks(monkeypatch):
    """Finding 1: outside torchrun / accelerate launch, vLLM's external_launcher raised KeyError: 'RANK'."""
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    colocated()
    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("0", "0", "1")
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and 0 < int(os.environ["MASTER_PORT"]) < 65536
    monkeypatch.setenv("RANK", "5")  # a launcher's own values are kept
    colocated()
    assert os.environ["RANK"] == "5"


@pytest.mark.parametrize("temperature, n, message", [(0.0, 4, "greedy decoding"), (2.5, 2, r"\[0, 2\]"),
                                                     (0.005, 2, "raises a temperature of 0.005 to 0.01")])
def test_sampling_vllm_refuses_is_refused_with_a_reason(temperature, n, message):
    """Finding 3: greedy with n > 1 and temperatures above 2 raise inside vLLM; below 0.01 vLLM silently clamps."""
    engine = colocated()
    with pytest.raises(EngineError, match=message):
        engine.generate([TOK("1+1=")["input_ids"]], SamplingParams(max_new_tokens=4, temperature=temperature),
                        num_samples=n)
    assert "generate" not in engine.llm.events


def test_image_prompts_reach_vllm_with_one_placeholder_per_image():
    """Finding 2: the processor's expanded placeholders went to vLLM, which expands each one again."""
    pytest.importorskip("torchvision")
    from PIL import Image

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.tiny import build_tiny_vlm, build_vlm_processor

    processor = build_vlm_processor()
    model = build_tiny_vlm(processor, seed=1)
    image_id = model.config.image_token_id
    builder = PromptBuilder(processor, "plain")
    two, _ = builder.build("Same colour?", [Image.new("RGB", (56, 56), "red"), Image.new("RGB", (56, 28), "blue")])
    assert two.ids.count(image_id) == 4 + 2  # expanded by the processor: one token per 2x2 merged patches
    engine = VLLMColocatedEngine("tiny-vl", processor.tokenizer, model=model, sampling_factory=StandInSampling,
                                 llm_factory=lambda **a: StandInLLM(image_token_id=image_id, **a))
    batch = engine.generate([two], SamplingParams(max_new_tokens=4), num_samples=2)
    sent = engine.llm.requests[0]
    assert sent["prompt_token_ids"].count(image_id) == 2 and len(sent["multi_modal_data"]["image"]) == 2
    assert len(sent["prompt_token_ids"]) == len(two.ids) - (4 + 2) + 2
    # the loss still sees the expanded ids and the processed images
    assert batch.prompt_ids[0][batch.prompt_mask[0].bool()].tolist() == two.ids and batch.model_inputs[0] is two.model_inputs


def test_lora_is_merged_out_of_place_one_layer_at_a_time():
    """Finding 8: the adapter is merged into each base weight on the way; the trainer's model is untouched
    (merge_adapter / unmerge_adapter wrote into it, and under ZeRO-3 into empty shards)."""
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(build_tiny_model(TOK, seed=0),
                               peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    engine = colocated()
    engine.update_weights(lora)
    assert all(torch.equal(before[n], p) for n, p in lora.named_parameters())  # nothing written into the trainer's
    merged = copy.deepcopy(lora).merge_and_unload()
    for (name, p), (_, q) in zip(merged.named_parameters(), engine.llm.model.named_parameters()):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)
    # by hand for one layer: W + (alpha / r) * B @ A
    layer = lora.base_model.model.model.layers[0].self_attn.q_proj
    want = layer.base_layer.weight + 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(engine.llm.model.model.layers[0].self_attn.q_proj.weight, want, atol=1e-6, rtol=0)


def test_fsdp_weights_are_announced_with_clean_names_and_full_shapes(process_group):
    """Finding 8: the metadata came from the wrapped model outside summon_full_params: FSDP's prefixes and
    the flattened shard's shapes, which the server would size its receive buffers by."""
    from accelerate.utils import DistributedType, extract_model_from_parallel
    from torch.distributed.fsdp import FullyShardedDataParallel

    from gpgrl.rollout.vllm import checked, vllm_weights, weight_metadata

    model = build_tiny_model(TOK, seed=0)
    want = [(n, p.dtype, tuple(p.shape)) for n, p in model.named_parameters()]
    values = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapped = FullyShardedDataParallel(model, device_id=torch.device("cpu"))
    assert [n for n, _ in wrapped.named_parameters()] != [n for n, _, _ in want]  # what was sent before
    accelerator = SimpleNamespace(distributed_type=DistributedType.FSDP, unwrap_model=extract_model_from_parallel,
                                  state=SimpleNamespace(deepspeed_plugin=None))
    meta = weight_metadata(accelerator, wrapped)
    assert meta == want
    sent = [(n, t.clone()) for n, t in checked(vllm_weights(accelerator, wrapped), meta)]
    assert [n for n, _ in sent] == [n for n, _, _ in want] and all(torch.equal(t, values[n]) for n, t in sent)
    with pytest.raises(EngineError, match=r"parameter 0 is model\.embed_tokens\.weight .* but the server was told"):
        list(checked(vllm_weights(accelerator, wrapped), [("other", torch.float32, (1,)), *meta[1:]]))


def test_lora_metadata_follows_the_stream_order_with_biases():
    """A merged LoRA weight is sent when its layer's last adapter matrix arrives, after the layer's bias
    (Qwen2's q/k/v have biases): the announced metadata must list it in that same place."""
    peft = pytest.importorskip("peft")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from gpgrl.rollout.vllm import checked, vllm_weights, weight_metadata

    config = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    lora = peft.get_peft_model(Qwen2ForCausalLM(config), peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    meta = weight_metadata(None, lora)
    names = [n for n, _, _ in meta]
    assert names.index("model.layers.0.self_attn.q_proj.bias") < names.index("model.layers.0.self_attn.q_proj.weight")
    assert not any("lora" in n or "base_layer" in n for n in names) and len(names) == len(set(names))
    assert [(n, t.dtype, tuple(t.shape)) for n, t in checked(vllm_weights(None, lora), meta)] == meta


def test_peft_names_for_vllm():
    named = [("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight", 1),
             ("base_model.model.lm_head.weight", 3)]
    assert list(vllm_named_parameters(None, iter(named))) == [("model.layers.0.self_attn.q_proj.weight", 1),
                                                               ("lm_head.weight", 3)]
    orphan = [("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", 2)]
    with pytest.raises(EngineError, match=r"q_proj\.lora_A\.default\.weight: a LoRA matrix of a layer"):
        list(vllm_named_parameters(None, iter(orphan)))  # never sent under a name vLLM does not have


@pytest.mark.gpu
def test_real_vllm_colocated_engine_matches_the_trainer():  # pragma: no cover - needs a GPU and vLLM
    pytest.importorskip("vllm")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = "Qwen/Qwen2.5-0.5B-Instruct"
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.bfloat16).cuda()
    engine = VLLMColocatedEngine(name, tok, gpu_memory_utilization=0.3, model=model)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True)
    batch = engine.generate([ids], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4).to("cuda")
    with torch.no_grad():
        mine, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    assert (batch.sampling_logprobs[mask] - mine[mask]).abs().mean() < 0.05
    p_ids, _ = left_pad([ids], tok.pad_token_id)
    assert p_ids.shape[1] == len(ids)

"""The vLLM engines against strict stand-ins of the vLLM surface they use (no GPU here).

The stand-ins refuse what real vLLM refuses and misbehave where real vLLM does when a client forgets
something; the payloads themselves are checked against real vLLM releases' code in
``tests/vllm_contract`` (``pytest -m vllm_contract``):

* the server engine: ``tests/test_vllm_server.py`` (it shares this module's sampling helpers);
* the colocated engine against the ``vllm`` stand-in package of ``tests/standins`` (``LLM`` and
  ``SamplingParams``; see its docstring): a real tiny model loaded from a folder and sampled as vLLM's v1
  sampler does, vLLM's start-up refusals (unknown ``EngineArgs``, a ``max_model_len`` above the context or
  beyond the KV budget, the launcher's ``RANK``), sleep levels that offload or discard the weights, wake
  tags, one placeholder per image, ``mm_processor_kwargs``, and a log of every call.

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
# The colocated engine runs against the strict `vllm` stand-in of tests/standins (loaded in this process under
# another name, tests/vllm_standin.py): a real tiny model loaded from a folder, sampled as vLLM's v1 sampler
# does, with vLLM's start-up refusals and sleep-mode semantics, every call logged.

LAUNCHER = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def standin():
    import vllm_standin

    return vllm_standin.load()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """The tiny model (seed 5) and its tokenizer saved as a folder: what the stand-in LLM loads."""
    from gpgrl.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=5)


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """The stand-in's call log for this test: ``calls()`` returns the calls so far, in order."""
    import vllm_standin

    path = tmp_path / "vllm-calls.jsonl"
    monkeypatch.setenv("VLLM_STANDIN_LOG", str(path))
    return lambda: vllm_standin.record().read_log(path) if path.exists() else []


@pytest.fixture
def launcher_clean():
    """The launcher variables as they were before the test (the engine sets the ones a plain run lacks)."""
    before = {k: os.environ.get(k) for k in LAUNCHER}
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def colocated(tiny_folder, launcher_clean):
    """``colocated(**kw)``: a VLLMColocatedEngine on the stand-in, loading ``tiny_folder`` (or ``folder=``);
    the stand-ins are shut down after the test (sleep mode allows one engine per process)."""
    made = []

    def make(folder=None, **kw):
        v = standin()
        kw = {"gpu_memory_utilization": 0.25, "max_model_len": 64, "dtype": "float32", **kw}
        engine = VLLMColocatedEngine(str(folder or tiny_folder), kw.pop("tokenizer", TOK), llm_factory=v.LLM,
                                     sampling_factory=v.SamplingParams, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.llm.shutdown()


@pytest.fixture
def with_standin(monkeypatch, launcher_clean):
    """``import vllm`` finds the stand-in (for the engine builders); its sleep-mode engines shut down after."""
    import sys

    v = standin()
    monkeypatch.setitem(sys.modules, "vllm", v)
    yield v
    import gc

    gc.collect()
    for llm in list(sys.modules[f"{v.__name__}.entrypoints.llm"]._SLEEP_MODE_ENGINES):
        llm.shutdown()


def cpu_accelerator():
    """What the builders read of an Accelerator, for one CPU process."""
    from accelerate.utils import DistributedType

    return SimpleNamespace(distributed_type=DistributedType.NO, unwrap_model=lambda m: m, process_index=0,
                           local_process_index=0, num_processes=1, state=SimpleNamespace(deepspeed_plugin=None))


def names(log, *keep):
    """The calls of a log, by name, those in ``keep`` only (all when empty)."""
    return [c["call"] for c in log if not keep or c["call"] in keep]


SYNC_CALLS = ("sleep", "wake_up", "load_weights", "reset_prefix_cache", "reset_encoder_cache", "generate")


def sync_calls(n_params: int, level: int = 2) -> list[tuple]:
    """One update with sleep mode, as the stand-in logs it: (call, its key argument)."""
    return [("sleep", level), ("wake_up", ["weights"]), *[("load_weights", None)] * n_params,
            ("wake_up", ["kv_cache"]), ("reset_prefix_cache", None), ("reset_encoder_cache", None)]


def with_args(log) -> list[tuple]:
    key = {"sleep": "level", "wake_up": "tags"}
    return [(c["call"], c.get(key.get(c["call"], ""))) for c in log if c["call"] in SYNC_CALLS]


def test_colocated_engine_generates_syncs_and_wakes_the_weights_first(colocated, calls):
    """Finding 5: the engine woke everything at once before the sync; now the weights wake, load, and only
    then the KV cache (a lower peak), and sleep level 2 discards the weights the sync rewrites anyway."""
    engine = colocated()
    llm = engine.llm
    started = calls()[0]["kwargs"]
    assert started["distributed_executor_backend"] == "external_launcher" and started["enable_sleep_mode"]
    assert started["logprobs_mode"] == "processed_logprobs"
    prompts = [TOK("12+3=")["input_ids"], TOK("4+5=")["input_ids"]]
    batch = engine.generate(prompts, SamplingParams(max_new_tokens=5, temperature=1.0), num_samples=2)
    assert [batch.prompt_ids[r][batch.prompt_mask[r].bool()].tolist() for r in range(4)] == [prompts[0]] * 2 + [prompts[1]] * 2
    with torch.no_grad():
        mine, _ = completion_logprobs(llm.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(batch.sampling_logprobs[mask], mine[mask], atol=1e-5, rtol=1e-5)
    trainer_model = build_tiny_model(TOK, seed=0)
    _step(trainer_model)
    before = len(calls())
    engine.sleep()  # the trainer's update
    with torch.no_grad():
        assert all(torch.isnan(p).all() for p in llm.model.parameters())  # level 2: discarded, not kept
    engine.update_weights(trainer_model)
    for (name, p), (_, q) in zip(trainer_model.named_parameters(), llm.model.named_parameters()):
        assert torch.equal(p, q), name
    n_params = len(list(trainer_model.parameters()))
    assert with_args(calls()[before:]) == sync_calls(n_params)
    engine.generate(prompts, SamplingParams(max_new_tokens=3), num_samples=2)  # awake and whole again
    assert calls()[-1]["asleep"] == []


def test_after_a_level_2_sleep_nothing_is_generated_before_a_sync(colocated):
    engine = colocated()
    prompt = [TOK("1+1=")["input_ids"]]
    engine.sleep()
    with pytest.raises(EngineError, match="slept at level 2, which discards its weights"):
        engine.generate(prompt, SamplingParams(max_new_tokens=3), num_samples=2)
    engine.wake_up()  # memory back, weights still garbage
    with pytest.raises(EngineError, match="update_weights"):
        engine.generate(prompt, SamplingParams(max_new_tokens=3), num_samples=2)
    engine.update_weights(build_tiny_model(TOK, seed=5))
    assert len(engine.generate(prompt, SamplingParams(max_new_tokens=3), num_samples=2)) == 2
    # the stand-in itself catches an engine that would sample from discarded weights
    engine.llm.sleep(level=2)
    engine.llm.wake_up()
    with pytest.raises(RuntimeError, match="discarded weights"):
        engine.llm.generate([{"prompt_token_ids": prompt[0]}], standin().SamplingParams(max_tokens=2))


def test_sleep_level_1_keeps_the_weights_and_is_a_setting(colocated, calls):
    engine = colocated(sleep_level=1)
    engine.sleep()
    engine.wake_up()  # a level-1 sleep may be undone without a sync: the weights were kept in host RAM
    original = build_tiny_model(TOK, seed=5)
    for (name, p), (_, q) in zip(original.named_parameters(), engine.llm.model.named_parameters()):
        assert torch.equal(p, q), name
    before = len(calls())
    engine.sleep()
    engine.update_weights(original)
    n_params = len(list(original.parameters()))
    assert with_args(calls()[before:]) == sync_calls(n_params, level=1)
    with pytest.raises(EngineError, match=r"vllm_sleep_level must be 1 .* or 2"):
        colocated(sleep_level=3)


def test_colocated_engine_sets_the_launcher_variables_a_plain_process_lacks(colocated, monkeypatch):
    """Outside torchrun / accelerate launch, vLLM's external_launcher raised KeyError: 'RANK'."""
    for key in LAUNCHER:
        monkeypatch.delenv(key, raising=False)
    colocated(sleep=False)
    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("0", "0", "1")
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and 0 < int(os.environ["MASTER_PORT"]) < 65536
    monkeypatch.setenv("RANK", "5")  # a launcher's own values are kept
    colocated(sleep=False)
    assert os.environ["RANK"] == "5"


@pytest.mark.parametrize("temperature, n, message", [(0.0, 4, "greedy decoding"), (2.5, 2, r"\[0, 2\]"),
                                                     (0.005, 2, "raises a temperature of 0.005 to 0.01")])
def test_sampling_vllm_refuses_is_refused_with_a_reason(colocated, calls, temperature, n, message):
    """Greedy with n > 1 and temperatures above 2 raise inside vLLM; below 0.01 vLLM silently clamps."""
    engine = colocated(sleep=False)
    with pytest.raises(EngineError, match=message):
        engine.generate([TOK("1+1=")["input_ids"]], SamplingParams(max_new_tokens=4, temperature=temperature),
                        num_samples=n)
    assert "generate" not in names(calls())
    v = standin()  # and the stand-in, as vLLM, refuses the first two and raises the third to 0.01
    if temperature == 0.005:
        assert v.SamplingParams(n=n, temperature=temperature).temperature == 0.01
    else:
        with pytest.raises(ValueError):
            v.SamplingParams(n=n, temperature=temperature)


def test_the_stand_in_samples_and_scores_as_vllms_processed_logprobs(colocated):
    """processed_logprobs: the sampled token's log-prob after temperature and top-k/top-p renormalisation
    (vLLM v1's sampler), checked against a hand-written computation on the stand-in's own model."""
    engine = colocated(sleep=False)
    prompt = TOK("7+8=")["input_ids"]
    batch = engine.generate([prompt], SamplingParams(max_new_tokens=6, temperature=0.7, top_k=5, top_p=0.9),
                            num_samples=3)
    model = engine.llm.model
    for row in range(3):
        n = int(batch.completion_mask[row].sum())
        seq = prompt + batch.completion_ids[row, :n].tolist()
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, len(prompt) - 1 : len(seq) - 1].float() / 0.7  # [n, V]
        for t in range(n):
            top = logits[t].topk(5)  # top-k 5, then the smallest prefix of them holding >= 0.9 of their mass
            probs = top.values.softmax(-1)
            keep = int((probs.cumsum(-1) - probs < 0.9).sum())
            kept = dict(zip(top.indices[:keep].tolist(), top.values[:keep].log_softmax(-1).tolist()))
            token = seq[len(prompt) + t]
            assert token in kept  # never sampled outside the top-k / top-p set
            assert batch.sampling_logprobs[row, t].item() == pytest.approx(kept[token], abs=1e-5)


def test_the_stand_in_refuses_what_vllm_refuses_at_start_up(tiny_folder, monkeypatch, calls, launcher_clean):
    v = standin()
    with pytest.raises(TypeError, match="unexpected keyword argument 'logprob_mode'"):
        v.LLM(model=str(tiny_folder), logprob_mode="processed_logprobs")
    with pytest.raises(ValueError, match=r"User-specified max_model_len \(1024\) is greater than the derived "
                                         r"max_model_len \(max_position_embeddings=512"):
        v.LLM(model=str(tiny_folder), max_model_len=1024)
    # KV cache: 2 layers x 2 KV heads x 16 dims x (K, V) x 4 bytes = 512 bytes a token in float32; a fake
    # GPU whose 25% holds the weights and 64 KiB of KV fits 128 tokens, not the model's 512
    llm = v.LLM(model=str(tiny_folder), max_model_len=64, dtype="float32")
    assert llm.kv_bytes_per_token == 512
    weights = sum(p.numel() for p in llm.model.parameters()) * 4
    monkeypatch.setenv("VLLM_STANDIN_GPU_MEMORY", str((weights + 128 * 512) * 4))
    assert v.LLM(model=str(tiny_folder), max_model_len=128, dtype="float32", gpu_memory_utilization=0.25)
    with pytest.raises(ValueError, match=r"max seq len \(512\).*estimated maximum model length is 128"):
        v.LLM(model=str(tiny_folder), dtype="float32", gpu_memory_utilization=0.25)  # None: the whole context
    assert v.LLM(model=str(tiny_folder), max_model_len=64).engine_dtype == torch.bfloat16  # vLLM's auto
    first = v.LLM(model=str(tiny_folder), enable_sleep_mode=True, max_model_len=64)
    with pytest.raises(AssertionError, match="one instance per process"):
        v.LLM(model=str(tiny_folder), enable_sleep_mode=True, max_model_len=64)
    first.sleep(level=2)
    with pytest.raises(ValueError, match="wake_up tags must be in"):
        first.wake_up(tags=["weights", "kv"])
    with pytest.raises(RuntimeError, match=r"generate\(\) while .*sleep"):
        first.generate([{"prompt_token_ids": [5, 6]}], v.SamplingParams(max_tokens=2))
    with pytest.raises(RuntimeError, match="wake the weights first"):  # level 2 on vLLM 0.17
        first.wake_up(tags=["kv_cache"])
    first.wake_up(tags=["weights"])
    with pytest.raises(ValueError, match=r"\['weights'\] is not asleep"):
        first.wake_up(tags=["weights"])
    first.shutdown()
    assert names(calls()).count("LLM") == 8


def test_the_engine_starts_with_the_runs_budget_and_what_the_trainer_loaded(tmp_path, tiny_folder, with_standin, calls,
                                                                            monkeypatch):
    """Finding 4: max_model_len was None (vLLM then takes the model's whole context and may not start), and
    dtype, trust_remote_code and a separate tokenizer were not forwarded (vLLM's dtype auto runs a float32
    checkpoint in bfloat16)."""
    from gpgrl.models.loading import load_policy
    from gpgrl.rollout.vllm import build_colocated_engine
    from helpers import tiny_config

    model = load_policy(str(tiny_folder))  # float32, context 512
    # the fake GPU of test_the_stand_in_refuses_what_vllm_refuses_at_start_up: room for 128 tokens of KV
    weights = sum(p.numel() for p in model.parameters()) * 4
    monkeypatch.setenv("VLLM_STANDIN_GPU_MEMORY", str((weights + 128 * 512) * 4))
    tokenizer_folder = tmp_path / "tokenizer"
    build_char_tokenizer(tokenizer_folder)
    cfg = tiny_config(tmp_path, model={"name_or_path": str(tiny_folder), "tokenizer": str(tokenizer_folder)},
                      data={"dataset": "builtin:arithmetic", "max_prompt_length": 48},
                      rollout={"engine": "vllm", "group_size": 4, "max_completion_length": 16,
                               "vllm_gpu_memory_utilization": 0.25})
    engine = build_colocated_engine(cfg, cpu_accelerator(), model, TOK)
    started = calls()[0]["kwargs"]
    assert started["max_model_len"] == 48 + 16 == engine.max_model_len
    assert started["dtype"] == "float32" and started["trust_remote_code"] is False
    assert started["tokenizer"] == str(tokenizer_folder) and "mm_processor_kwargs" not in started
    assert calls()[1]["call"] == "ready" and calls()[1]["dtype"] == "float32"
    engine.llm.shutdown()
    cfg.rollout.vllm_max_model_len = 100  # the override
    engine = build_colocated_engine(cfg, cpu_accelerator(), model, TOK)
    assert calls()[-1]["max_model_len"] == 100
    engine.llm.shutdown()
    cfg.rollout.vllm_max_model_len = 1000
    with pytest.raises(EngineError, match=r"vllm_max_model_len=1000 is above the model's context of 512 tokens"):
        build_colocated_engine(cfg, cpu_accelerator(), model, TOK)
    cfg.rollout.vllm_max_model_len = None
    cfg.data.max_prompt_length = None  # the prompt budget is the context minus the answer: 512 in all, too big
    with pytest.raises(ValueError, match=r"max seq len \(512\)"):
        build_colocated_engine(cfg, cpu_accelerator(), model, TOK)
    cfg.model.name_or_path = str(tmp_path / "model.Q4_1.gguf")
    with pytest.raises(EngineError, match="cannot start from the GGUF file"):
        build_colocated_engine(cfg, cpu_accelerator(), model, TOK)


def test_trainer_sleeps_before_the_update_and_syncs_weights_first_and_not_at_all_without_signal(
        tmp_path, colocated, calls):
    """Finding 5, through the trainer: per step generate, then sleep / wake weights / load / wake KV / reset;
    a step with no signal (skipped) neither sleeps nor syncs, and nothing generates while anything sleeps."""
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    rewards_seen = []

    def signal_except_second_step(completions, **_):
        rewards_seen.append(len(completions))
        if len(rewards_seen) == 2:
            return [0.0] * len(completions)  # every group degenerate: no signal, the update is skipped
        return [c.count("7") / max(len(c), 1) + 0.01 * (i % 2) for i, c in enumerate(completions)]

    cfg = tiny_config(tmp_path, rollout={"engine": "vllm", "group_size": 4, "max_completion_length": 6},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0}, train={"steps": 3, "prompts_per_step": 2})
    engine = colocated()
    model = build_tiny_model(TOK, seed=5)  # the stand-in's folder holds the same weights
    trainer = Trainer.from_config(cfg, model=model, tokenizer=TOK, engine=engine, rewards=[signal_except_second_step])
    history = trainer.train()
    assert [m["optim/skipped"] for m in history] == [0.0, 1.0, 0.0]
    n = len(list(model.parameters()))
    step = [("generate", None), *sync_calls(n)]
    assert with_args(calls()) == [*step, ("generate", None), *step]
    generates = [c for c in calls() if c["call"] == "generate"]
    assert all(c["asleep"] == [] for c in generates)
    record = standin().__name__ + "._record"
    import sys

    weights = sys.modules[record].weights_hash
    assert generates[0]["weights"] == weights(build_tiny_model(TOK, seed=5).named_parameters())
    assert generates[1]["weights"] == generates[2]["weights"] != generates[0]["weights"]  # skipped: unchanged
    assert calls()[-1]["call"] == "reset_encoder_cache"
    for (name, p), (_, q) in zip(model.named_parameters(), engine.llm.model.named_parameters()):
        assert torch.equal(p, q), name


def test_generation_is_gathered_only_for_an_engine_that_runs_the_trainers_module(tmp_path, colocated, monkeypatch):
    """Finding 6: a full-parameter gather (under ZeRO-3 / FSDP: the whole model on every process) wrapped
    every engine's generation, although vLLM samples with its own copy of the weights."""
    import contextlib

    import gpgrl.parallel
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    gathered = []

    @contextlib.contextmanager
    def recording(accelerator, model):
        gathered.append(type(model).__name__)
        yield

    monkeypatch.setattr(gpgrl.parallel, "gathered_for_generation", recording)
    settings = {"rollout": {"group_size": 2, "max_completion_length": 4}, "train": {"steps": 1, "prompts_per_step": 2},
                "algorithm": {"preset": "gpg", "resample_threshold": 0.0}}
    Trainer.from_config(tiny_config(tmp_path / "vllm", **settings), model=build_tiny_model(TOK, seed=5), tokenizer=TOK,
                        engine=colocated()).train()
    assert gathered == []
    Trainer.from_config(tiny_config(tmp_path / "hf", **settings), model=build_tiny_model(TOK, seed=5),
                        tokenizer=TOK).train()  # the hf engine: transformers generate on the trainer's module
    assert len(gathered) == 1  # one draw, one gather around its generation


def test_image_prompts_reach_vllm_with_one_placeholder_per_image(tmp_path, colocated, calls):
    """The processor's expanded placeholders went to vLLM, which expands each one again; and vLLM's
    log-probs of image prompts agree with the trainer's (the same processed images)."""
    pytest.importorskip("torchvision")
    from PIL import Image

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.tiny import build_vlm_processor, save_tiny_vlm

    folder = save_tiny_vlm(tmp_path / "vlm", seed=1)
    processor = build_vlm_processor()
    engine = colocated(folder=folder, tokenizer=processor.tokenizer, max_model_len=256, sleep=False)
    model = engine.llm.model
    image_id = model.config.image_token_id
    builder = PromptBuilder(processor, "plain")
    two, _ = builder.build("Same colour?", [Image.new("RGB", (56, 56), "red"), Image.new("RGB", (56, 28), "blue")])
    assert two.ids.count(image_id) == 4 + 2  # expanded by the processor: one token per 2x2 merged patches
    engine.image_token_id = image_id
    batch = engine.generate([two], SamplingParams(max_new_tokens=4), num_samples=2)
    sent = calls()[-1]
    assert sent["call"] == "generate" and sent["image_tokens"] == [[4, 2]] and sent["prompt_lens"] == [len(two.ids)]
    # the loss still sees the expanded ids and the processed images
    assert batch.prompt_ids[0][batch.prompt_mask[0].bool()].tolist() == two.ids
    assert batch.model_inputs[0] is two.model_inputs
    # rows whose answer holds no vision placeholder (a random tiny model may sample one; the trainer's
    # forward would then count it as an image slot)
    from gpgrl.models.vision import placeholder_token_ids

    vision_tokens = set(placeholder_token_ids(model))
    rows = [r for r in range(len(batch)) if not set(batch.completion_ids[r].tolist()) & vision_tokens]
    assert rows
    with torch.no_grad():
        mine, _ = completion_logprobs(model, batch.prompt_ids[rows], batch.prompt_mask[rows],
                                      batch.completion_ids[rows], batch.completion_mask[rows],
                                      model_inputs=batch.model_inputs_for(rows), use_position_ids=False)
    mask = batch.completion_mask[rows].bool()
    torch.testing.assert_close(batch.sampling_logprobs[rows][mask], mine[mask], atol=1e-4, rtol=1e-4)


def test_max_pixels_reach_vllm_so_it_sees_the_trainers_image_sizes(tmp_path, with_standin, calls):
    """Finding 8: model.max_pixels resized the trainer's images but not vLLM's (no mm_processor_kwargs), so
    the two saw different token counts for the same image."""
    pytest.importorskip("torchvision")
    from PIL import Image

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.source import ModelSource
    from gpgrl.models.tiny import save_tiny_vlm
    from gpgrl.rollout.vllm import build_colocated_engine
    from helpers import tiny_config

    folder = save_tiny_vlm(tmp_path / "vlm", seed=1)  # its processor: max_pixels 56 x 56
    cfg = tiny_config(tmp_path, model={"name_or_path": str(folder), "max_pixels": 2 * 28 * 28},
                      data={"dataset": "builtin:arithmetic", "max_prompt_length": 64},
                      rollout={"engine": "vllm", "group_size": 2, "max_completion_length": 4})
    source = ModelSource(str(folder), vision=True, max_pixels=cfg.model.max_pixels)
    processor, model = source.load_processor(), source.load_model()
    one, _ = PromptBuilder(processor, "plain").build("Colour?", [Image.new("RGB", (56, 56), "red")])
    trainer_tokens = one.ids.count(model.config.image_token_id)
    assert trainer_tokens == 1  # 56 x 56 = 3136 pixels > 1568: resized to 28 x 28, one merged token
    engine = build_colocated_engine(cfg, cpu_accelerator(), model, processor)
    assert calls()[0]["kwargs"]["mm_processor_kwargs"] == {"max_pixels": 1568}
    engine.generate([one], SamplingParams(max_new_tokens=2), num_samples=2)
    assert calls()[-1]["image_tokens"] == [[trainer_tokens]]  # vLLM's count (4 without the setting)


def test_lora_is_merged_out_of_place_one_layer_at_a_time(colocated):
    """The adapter is merged into each base weight on the way; the trainer's model is untouched
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
    """The metadata came from the wrapped model outside summon_full_params: FSDP's prefixes and the
    flattened shard's shapes, which the server would size its receive buffers by. (Two processes, one
    FSDP unit at a time: tests/test_full_parameters.py.)"""
    from accelerate.utils import DistributedType, extract_model_from_parallel
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy

    from gpgrl.rollout.vllm import checked, vllm_weights, weight_metadata

    model = build_tiny_model(TOK, seed=0)
    want = [(n, p.dtype, tuple(p.shape)) for n, p in model.named_parameters()]
    values = {n: p.detach().clone() for n, p in model.named_parameters()}
    # one process: FSDP shards nothing and would switch to NO_SHARD itself (with a warning); still flattened
    wrapped = FullyShardedDataParallel(model, device_id=torch.device("cpu"),
                                       sharding_strategy=ShardingStrategy.NO_SHARD)
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
    engine = VLLMColocatedEngine(name, tok, gpu_memory_utilization=0.3, model=model, max_model_len=1024,
                                 dtype="bfloat16")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True)
    batch = engine.generate([ids], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4).to("cuda")
    with torch.no_grad():
        mine, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    assert (batch.sampling_logprobs[mask] - mine[mask]).abs().mean() < 0.05
    p_ids, _ = left_pad([ids], tok.pad_token_id)
    assert p_ids.shape[1] == len(ids)

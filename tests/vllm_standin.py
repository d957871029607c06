"""The ``vllm`` stand-in of ``tests/standins`` for tests: loaded in this process under another name, and the
environment that makes a subprocess import it as ``vllm``.

The test runner never has ``tests/standins`` on ``sys.path`` (a test that means real vLLM would import the
stand-in); a subprocess gets it through :func:`subprocess_env`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent
STANDINS = TESTS / "standins"
PACKAGE = STANDINS / "vllm"
NAME = "gpgrl_tests_vllm_standin"


def load() -> ModuleType:
    """The stand-in package, imported as ``gpgrl_tests_vllm_standin`` (its modules import each other relatively)."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(NAME, PACKAGE / "__init__.py",
                                                  submodule_search_locations=[str(PACKAGE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module


def record() -> ModuleType:
    """The stand-in's ``_record`` module (call log reader, weights fingerprint)."""
    load()
    return sys.modules[f"{NAME}._record"]


def subprocess_env(log: Path | None = None, gpu_memory: int | None = None, **extra: str) -> dict[str, str]:
    """An environment in which ``import vllm`` finds the stand-in, ``gpgrl`` this checkout and ``helpers`` the
    tests' rewards; ``log``: the call log; ``gpu_memory``: the fake GPU's bytes."""
    path = [str(STANDINS), str(TESTS.parent / "src"), str(TESTS)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", **extra}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a plain `gpgrl train`: the engine sets the launcher variables itself
    if log is not None:
        env["VLLM_STANDIN_LOG"] = str(log)
    if gpu_memory is not None:
        env["VLLM_STANDIN_GPU_MEMORY"] = str(gpu_memory)
    return env


def distinct_characters(completions, **_):
    """A reward (``vllm_standin:distinct_characters``) that a random tiny model's answers almost never tie on:
    the share of distinct characters, so every group carries a signal and every step updates."""
    return [len(set(c)) / max(len(c), 1) for c in completions]


class TwoTurns:
    """An environment (``vllm_standin:TwoTurns``) whose episodes take two policy turns whatever the policy
    writes: the first turn gets the observation ``again``, the second ends the episode."""

    def reset(self, record):
        self.turns = 0

    def step(self, text):
        from gpgrl.rollout.environments import Step

        self.turns += 1
        return Step(done=True) if self.turns >= 2 else Step([{"role": "user", "content": "again"}])

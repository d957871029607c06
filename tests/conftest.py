import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
#: The benchmark data folder (holding math/ and vision/): $GPGRL_DATA, else ../shared/data next to the repository.
SHARED_DATA = Path(os.environ.get("GPGRL_DATA") or REPO.parent / "shared" / "data").expanduser()
#: Every skip for missing data says this, so the summary can count them.
DATA_MISSING = "benchmark data not found"


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

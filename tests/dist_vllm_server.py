"""Two real training processes and one stand-in `vllm serve` (hosted by process 0), for the multi-process test.

    accelerate launch --multi_gpu --num_processes 2 tests/dist_vllm_server.py OUT_DIR

Both processes sync the same trained weights through the server engine (only process 0 sends them),
then process 1 samples at once; the server holds the update half way for 3 s, so a completion sent
during the sync would be served from half-updated weights. Then the server answers /update_weights with
HTTP 500 and both processes sync again. Each process writes OUT_DIR/rank{N}.json: the fingerprints of the
weights its completions were served with (process 0: every completion the server served) and the
error each process got from the failed sync.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from gpgrl.models.tiny import build_tiny_model
from gpgrl.rollout.engine import SamplingParams
from gpgrl.rollout.vllm import EngineError, VLLMServerEngine
from test_vllm_engines import TOK, _step
from test_vllm_server import Loopback, StandInServer, fingerprint


def main(out: Path) -> None:
    acc = Accelerator(cpu=True)
    main_process = acc.is_main_process
    server = StandInServer(build_tiny_model(TOK, seed=5), Loopback(), hold_update_s=3.0) if main_process else None
    url = [server.url if main_process else None]
    broadcast_object_list(url)
    import torch

    torch.manual_seed(1)
    trained = build_tiny_model(TOK, seed=0)
    _step(trained)  # the same step on both processes, as DDP keeps them
    engine = VLLMServerEngine(url[0], TOK, timeout=60, sync_timeout=60, accelerator=acc,
                              transport=server.transport if main_process else Loopback())
    engine.update_weights(trained)
    result: dict = {"rank": acc.process_index, "world": acc.num_processes, "new": fingerprint(trained)}
    if not main_process:  # the next step's rollout, at once
        engine.generate([TOK("12+3=")["input_ids"]], SamplingParams(max_new_tokens=4), num_samples=2)
    acc.wait_for_everyone()
    if main_process:
        result["served"] = list(server.served)
        server.fail["/update_weights"] = 500
    acc.wait_for_everyone()
    try:
        engine.update_weights(trained)
        result["error"] = None
    except EngineError as e:
        result["error"] = str(e)
    acc.wait_for_everyone()
    (out / f"rank{acc.process_index}.json").write_text(json.dumps(result))
    if server is not None:
        server.close()
    acc.end_training()


if __name__ == "__main__":  # a script, not a test module: pytest's doctest collection imports it
    main(Path(sys.argv[1]))

"""One GPG step with a scripted engine, for the multi-process test.

    python tests/dist_step.py OUT_DIR                                   # one process
    accelerate launch --cpu --num_processes 2 tests/dist_step.py OUT_DIR  # two processes

Writes OUT_DIR/result.pt (the trained parameters and the step's metrics) from the main process.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.train.trainer import Trainer
from helpers import ScriptedEngine, save_result, tiny_config


def main(out: Path) -> None:
    cfg = tiny_config(out, rewards=[{"name": "helpers:has_one"}],
                      algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 1, "prompts_per_step": 8, "micro_batch_size": 3},
                      optim={"lr": 1e-2, "adam_eps": 1e-3})
    tok = build_char_tokenizer()
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok, engine=ScriptedEngine(tok))
    (metrics,) = trainer.train()
    save_result(trainer, metrics, out)


if __name__ == "__main__":  # a script, not a test module: pytest's doctest collection imports it
    main(Path(sys.argv[1]))

"""One GPG step through an engine whose sampling log-probs disagree with the trainer's, for the multi-process
importance-metrics test (``test_importance.py``).

    python tests/dist_importance.py OUT_DIR                                   # one process
    accelerate launch --cpu --num_processes 2 tests/dist_importance.py OUT_DIR  # two processes

Writes OUT_DIR/result.pt (the trained parameters and the step's metrics) from the main process, and each
process's own importance statistics to OUT_DIR/stats-RANK.pt.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpgrl.algorithms.importance import combine_stats
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.train.trainer import Trainer
from helpers import save_result, tiny_config
from importance_engines import PerturbedScriptedEngine


def main(out: Path) -> None:
    cfg = tiny_config(out, rewards=[{"name": "helpers:has_one"}],
                      rollout={"group_size": 4, "max_completion_length": 6, "engine": "vllm_server"},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 1, "prompts_per_step": 8, "micro_batch_size": 3},
                      optim={"lr": 1e-2, "adam_eps": 1e-3})
    tok = build_char_tokenizer()
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok,
                                  engine=PerturbedScriptedEngine(tok))
    local = []
    importance = trainer._importance

    def recording(*args):
        w, stats = importance(*args)
        local.append(stats)
        return w, stats

    trainer._importance = recording
    (metrics,) = trainer.train()
    torch.save(combine_stats(local), out / f"stats-{trainer.acc.process_index}.pt")
    save_result(trainer, metrics, out)


if __name__ == "__main__":  # a script, not a test module: pytest's doctest collection imports it
    main(Path(sys.argv[1]))

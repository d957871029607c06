"""One GPG step on multi-turn episodes (a scripted engine, the Countdown environment), for the multi-process test.

    python tests/dist_episodes.py OUT_DIR                                   # one process
    accelerate launch --cpu --num_processes 2 tests/dist_episodes.py OUT_DIR  # two processes

Writes OUT_DIR/result.pt (the trained parameters and the step's metrics) from the main process, and the run's
rollouts.jsonl under OUT_DIR/run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.train.trainer import Trainer
from helpers import Countdown, TurnEngine, save_result, tiny_config


def script(turn: int, text: str, j: int) -> str:
    """Per group of 4: answers 0 and 2 ask once, 1 asks twice, 3 never; "5+..." prompts: all ask once."""
    if turn:  # which answer of its group this episode is: the 7s its first turn wrote
        j = text.split("<|assistant|>")[1].split("<eos>")[0].count("7") - 1
    plan = {0: ["ask", "x"], 1: ["ask", "ask", "x"], 2: ["ask", "x"], 3: ["x"]}[j]
    if "<|user|>5" in text:
        plan = ["ask", "x"]
    return plan[min(turn, len(plan) - 1)] + "7" * (j + 1)


def main(out: Path) -> None:
    assert Countdown  # the environment, named by path below
    cfg = tiny_config(out, rewards=[{"name": "environment"}],
                      rollout={"group_size": 4, "max_completion_length": 200, "environment": "helpers:Countdown"},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 1, "prompts_per_step": 8, "micro_batch_size": 3},
                      optim={"lr": 1e-2, "adam_eps": 1e-3})
    tok = build_char_tokenizer()
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok,
                                  engine=TurnEngine(tok, script))
    (metrics,) = trainer.train()
    save_result(trainer, metrics, out)


if __name__ == "__main__":  # a script, not a test module: pytest's doctest collection imports it
    main(Path(sys.argv[1]))

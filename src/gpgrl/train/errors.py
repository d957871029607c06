"""The trainer's own exceptions (re-exported by :mod:`gpgrl.train.trainer`)."""


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run at a step boundary, after a checkpoint of that step was saved."""

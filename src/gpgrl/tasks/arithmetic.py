"""The old path of :mod:`gpgrl.data.arithmetic` (the built-in addition task), kept for scripts that import it."""

from gpgrl.data.arithmetic import ArithmeticTask

__all__ = ["ArithmeticTask"]

"""The built-in objectives, one file each; importing this package registers them (and their presets).

A new objective is one file here plus its line below (or, outside the package, a file named in the
recipe's ``algorithm.objective``; see :mod:`gpgrl.algorithms.objective`).
"""

from gpgrl.algorithms.objectives import gpg  # noqa: F401  (gpg, grpo, dr_grpo, dapo)

"""The built-in objectives, one file each; importing this package registers them (and their presets).

A new objective is one file here plus its line below (or, outside the package, a file named in the
recipe's ``algorithm.objective``; see :mod:`gpgrl.algorithms.objective`).
"""

# one name per objective file (gpg.py registers gpg, grpo, dr_grpo and dapo)
from gpgrl.algorithms.objectives import cispo, gpg, gspo, reinforce_pp, rloo  # noqa: F401

"""Built-in verifiable tasks that run on a CPU in minutes (``data.dataset: builtin:NAME``).

They are registered by name in :data:`gpgrl.data.datasets.BUILTIN_DATASETS` (the one registry; add a task
there); the quickstart's training and warm start live in :mod:`gpgrl.tasks.quickstart`.
"""

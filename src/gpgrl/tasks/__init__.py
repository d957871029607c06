"""The applications built on the trainer: the quickstart (:mod:`gpgrl.tasks.quickstart`, ``gpgrl quickstart``)
and its supervised warm start (:mod:`gpgrl.tasks.sft`).

This package sits above ``train`` (tests/test_structure.py LAYERS). The generated datasets they train on
(``data.dataset: builtin:NAME``) are data, one layer below the trainer: :mod:`gpgrl.data.arithmetic`,
:mod:`gpgrl.data.shapes`, registered in :data:`gpgrl.data.datasets.BUILTIN_DATASETS`
(their old paths ``gpgrl.tasks.arithmetic`` / ``gpgrl.tasks.shapes`` are gone: a recipe naming
``gpgrl.tasks.shapes:answer_only`` now names ``gpgrl.data.shapes:answer_only``).
"""

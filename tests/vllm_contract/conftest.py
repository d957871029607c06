# probe.py imports vllm and runs only in the contract tests' subprocesses (never collected here).
collect_ignore = ["probe.py"]

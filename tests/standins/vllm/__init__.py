"""A strict CPU stand-in of the ``vllm`` package: ``LLM`` and ``SamplingParams`` backed by a real transformers
model, for tests and for ``benchmarks/gpu_smoke.py --dry-run`` on a machine without a GPU or vLLM.

Use it by putting ``tests/standins`` first on ``PYTHONPATH`` (a subprocess: ``gpgrl train --rollout.engine
vllm`` then imports this package as ``vllm``); never on the test runner's own ``sys.path``, where a test that
means real vLLM would import it instead. In-process tests load it under another name
(``tests/vllm_standin.py``).

Settings, by environment variable:

* ``VLLM_STANDIN_LOG``: a JSONL file every call is appended to (``_record.log``);
* ``VLLM_STANDIN_GPU_MEMORY``: the fake GPU's size in bytes (default 80 GiB), which with
  ``gpu_memory_utilization`` decides whether one ``max_model_len`` sequence's KV cache fits.

See ``entrypoints/llm.py`` for what it enforces and how it samples.
"""

from .entrypoints.llm import LLM
from .logprobs import Logprob
from .outputs import CompletionOutput, RequestOutput
from .sampling_params import SamplingParams

__version__ = "0.34.0+cpu.standin"

__all__ = ["LLM", "CompletionOutput", "Logprob", "RequestOutput", "SamplingParams"]

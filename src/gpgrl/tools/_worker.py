"""Entry point of a tool's worker process: ``python -m gpgrl.tools._worker module:function``.

See :class:`gpgrl.tools._process.ProcessTool`.
"""

import sys

from gpgrl.tools._process import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1])

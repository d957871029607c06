"""A stand-in of ``vllm serve`` that runs as its own process, for ``benchmarks/gpu_smoke.py --dry-run``.

    python tests/standins/vllm_server.py MODEL_FOLDER --port 8000 --max-model-len 1024

It is ``tests/test_vllm_server.py``'s :class:`StandInServer` (vLLM's routes; sampling fields a request
omits filled from a generation config; a prefix cache that serves a prompt it has seen with the weights
it first saw it with, until ``/reset_prefix_cache``; ``/pause?mode=wait`` / ``/resume`` answering 503
while paused, as vLLM 0.34) on the given port, with ``GET /health`` (200 once it serves), and a TCP
connection in NCCL's place for the weights:

* ``POST /init_weight_transfer_engine`` connects to the trainer's rendezvous
  (``master_address``:``master_port``, where :class:`SocketTransport`, the trainer's end, listens), as
  vLLM's workers connect to the trainer's TCP store;
* ``POST /update_weights`` reads each announced tensor's raw bytes from that connection, sized from
  ``update_info``'s dtypes and shapes as NCCL's receive fills buffers allocated from them, and loads them
  by name (an unknown name or a short read is an error, as vLLM's ``load_weights`` would raise).

MODEL_FOLDER must hold a tiny model saved by :func:`gpgrl.models.tiny.save_tiny_model`: the stand-in
samples with the tests' character tokenizer's EOS. ``tests`` and ``src`` must be importable
(``PYTHONPATH``); the trainer's side (:class:`SocketTransport`) needs neither.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
#: Seconds the server keeps trying to reach the trainer's rendezvous (which may start listening a moment later).
CONNECT_TIMEOUT_S = 60.0


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's raw bytes in memory order (what a broadcast moves), for any dtype.

    >>> len(tensor_bytes(torch.ones(3, dtype=torch.bfloat16))), len(tensor_bytes(torch.ones(2, 2)))
    (6, 16)
    """
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def tensor_from(data: bytes, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    """The inverse of :func:`tensor_bytes`, given the dtype and shape that ``update_info`` announced.

    >>> t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    >>> torch.equal(tensor_from(tensor_bytes(t), torch.float32, [2, 3]), t)
    True
    """
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape).clone()


def read_exactly(conn: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ValueError(f"the weight connection closed with {left} of {n} bytes still to come")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class SocketTransport:
    """The trainer's end of the stand-in's weight transfer, in :class:`gpgrl.rollout.vllm.NCCLTransport`'s
    place: ``init`` listens on the rendezvous address and port and accepts the server's one worker;
    ``send`` writes each tensor's bytes in order (the server reads them inside ``/update_weights``)."""

    def __init__(self, accept_timeout: float = 300.0):
        self.accept_timeout = accept_timeout
        self._conn: socket.socket | None = None

    def init(self, master_address: str, master_port: int, world_size: int) -> None:
        if world_size != 2:
            raise ValueError(f"the stand-in server has one worker (world size 2 with the trainer), got {world_size}")
        with socket.create_server((master_address, master_port)) as listener:  # OSError if taken
            listener.settimeout(self.accept_timeout)
            self._conn, _ = listener.accept()

    def send(self, tensors: Iterator[tuple[str, torch.Tensor]]) -> None:
        if self._conn is None:
            raise RuntimeError("SocketTransport.send before init: no server joined the rendezvous")
        for _, tensor in tensors:
            self._conn.sendall(tensor_bytes(tensor))


def served_stand_in(model: torch.nn.Module, port: int, max_model_len: int):
    """``StandInServer`` listening on 127.0.0.1:``port``, with /health and the socket weight transfer."""
    sys.path.insert(0, str(TESTS))
    from test_vllm_server import UPDATE_INFO_KEYS, StandInServer

    class Served(StandInServer):
        def __init__(self) -> None:
            super().__init__(model, transport=None, max_model_len=max_model_len)
            base = self.httpd.RequestHandlerClass
            self.httpd.shutdown()  # the parent listens on a port of its own choosing: move to ours
            self.httpd.server_close()

            class Handler(base):
                def do_GET(self):
                    if self.path == "/health":
                        self.send_response(200)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    return super().do_GET()

            from http.server import ThreadingHTTPServer

            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
            self.peer: socket.socket | None = None
            threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

        def route(self, path, query, body):
            reply = super().route(path, query, body)  # checks init_info's keys first
            if path == "/init_weight_transfer_engine":
                info = body["init_info"]
                self.peer = self._connect(info["master_address"], int(info["master_port"]))
            return reply

        def _connect(self, address: str, port: int) -> socket.socket:
            end = time.monotonic() + CONNECT_TIMEOUT_S
            while True:
                try:
                    return socket.create_connection((address, port), timeout=CONNECT_TIMEOUT_S)
                except OSError:
                    if time.monotonic() > end:
                        raise ValueError(f"the trainer's rendezvous {address}:{port} did not answer within "
                                         f"{CONNECT_TIMEOUT_S:g} s") from None
                    time.sleep(0.05)

        def update(self, info):
            if set(info) - UPDATE_INFO_KEYS:
                raise ValueError(f"Invalid update_info: unexpected {sorted(set(info) - UPDATE_INFO_KEYS)}")
            if self.peer is None:
                raise ValueError("/update_weights before /init_weight_transfer_engine")
            state = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, dtype_name, shape in zip(info["names"], info["dtype_names"], info["shapes"]):
                    dtype = getattr(torch, dtype_name)
                    size = torch.empty((), dtype=dtype).element_size() * int(torch.Size(shape).numel())
                    tensor = tensor_from(read_exactly(self.peer, size), dtype, shape)  # received whatever the name
                    if name not in state:
                        raise ValueError(f"no parameter named {name!r} in the served model")
                    if list(state[name].shape) != list(shape):
                        raise ValueError(f"{name}: announced shape {shape}, the served model's is "
                                         f"{list(state[name].shape)}")
                    state[name].copy_(tensor)
            return {"message": "Weights updated"}

        def close(self):
            self.release.set()
            self.httpd.shutdown()
            if self.peer is not None:
                self.peer.close()

    return Served()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a folder saved by gpgrl.models.tiny.save_tiny_model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-model-len", type=int, default=1024)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from test_vllm_engines import EOS

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.eos_token_id != EOS:
        print(f"{args.model}: not a tiny model of gpgrl.models.tiny (EOS id {tokenizer.eos_token_id}, the stand-in "
              f"samples with {EOS})", file=sys.stderr)
        return 2
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    server = served_stand_in(model, args.port, args.max_model_len)
    print(f"stand-in vllm serve {args.model} at {server.url}", flush=True)
    threading.Event().wait()  # until terminated
    return 0


if __name__ == "__main__":
    sys.exit(main())

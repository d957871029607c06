"""The ``python`` tool: run the policy's code in a separate, limited process and return what it printed.

Each call starts a fresh interpreter (``sys.executable -I -B``) in a fresh scratch directory (its working
directory, deleted afterwards), with:

* a wall-clock limit: at the limit the whole process group is killed, and the call raises
  :class:`~gpgrl.tools.ToolTimeout` (the :class:`~gpgrl.tools.Toolbox` reports error kind ``"timeout"``);
* a memory limit (``RLIMIT_AS``: an allocation past it raises ``MemoryError`` in the code), a CPU-time
  limit (``RLIMIT_CPU``, a second above the wall-clock one), a file-size limit (``RLIMIT_FSIZE``) and no
  core files;
* no network: the process runs in its own empty network namespace (``unshare -rn``) where the machine
  allows unprivileged user namespaces (probed once), and in every case an audit hook refuses sockets;
* file access confined by an audit hook (:func:`sys.addaudithook`, installed before the code runs):
  writing, creating, renaming and deleting only inside the scratch directory, reading only there and in
  the Python installation (``sys.prefix``, ``sys.base_prefix`` and the import path); starting processes
  (``subprocess``, ``os.system``, ``os.exec*``, ``os.fork``, ``os.posix_spawn``), signalling processes and
  loading C libraries through ``ctypes`` are refused;
* the process is killed if the process that started it dies (``PR_SET_PDEATHSIG`` on Linux);
* an environment holding only ``HOME``/``TMPDIR`` (the scratch directory), ``PATH``, a UTF-8 locale and
  one-thread settings for numeric libraries.

What it does not guarantee: the audit hook is a guard against code that wanders, not a security boundary
against code written to escape (C extensions that are already importable, and Python-level tricks on the
hook's own objects, are not audited). The process, the limits, the network namespace and the kill are the
hard parts. Run untrusted policies' code in a container or a VM as well.

The limits are the module defaults below, or those given to :func:`python_tool`. The limits are set by the
child on itself before the code runs (not in a ``preexec_fn``, which is unsafe in a process with threads,
such as a trainer).

>>> python("print(2**100)")
'1267650600228229401496703205376\\n'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from gpgrl.tools._types import ToolFailed, ToolTimeout

__all__ = ["CPU_GRACE_S", "FILE_SIZE_MB", "MEMORY_MB", "OUTPUT_CHARS", "TIMEOUT_S", "python", "python_tool"]

#: Wall-clock seconds a ``python`` call may run.
TIMEOUT_S = 10.0
#: Address-space limit of the process, in MiB.
MEMORY_MB = 512
#: Largest file the code may write (its printed output included), in MiB.
FILE_SIZE_MB = 16
#: Seconds of CPU time allowed beyond the wall-clock limit.
CPU_GRACE_S = 1.0
#: Characters of output returned: the first part of what was printed, and the end of the error output.
OUTPUT_CHARS = 4000

_BOOTSTRAP = r'''
import json, linecache, os, resource, signal, sys, traceback
scratch, limits = os.path.realpath(sys.argv[1]), json.loads(sys.argv[2])
for name, value in limits["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file-size limit raises OSError instead
if sys.platform.startswith("linux"):  # killed with the process that started it, should that one die first
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != limits["parent"]:
        os._exit(1)
with open(limits["code_file"], encoding="utf-8") as f:
    code = f.read()
os.chdir(scratch)
_sep = os.sep
_read_roots = tuple(sorted({os.path.realpath(p) for p in
                            [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]
                            if isinstance(p, str) and p}))
_read_files = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
_refused = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
            "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "pty.", "ctypes.", "os.startfile",
            "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
            "telnetlib.", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "resource.setrlimit",
            "resource.prlimit", "sys.remote_exec")
_writes = {"os.rename": 2, "os.link": 2, "os.symlink": 2, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1,
           "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1, "os.chflags": 1, "os.lchflags": 1,
           "os.setxattr": 1, "os.removexattr": 1, "shutil.copyfile": 2, "shutil.copymode": 2,
           "shutil.copystat": 2, "shutil.copytree": 2, "shutil.rmtree": 1, "shutil.move": 2,
           "shutil.make_archive": 1, "shutil.unpack_archive": 2, "os.mkfifo": 1, "os.mknod": 1}
_reads = {"os.listdir": 1, "os.scandir": 1, "os.chdir": 1, "glob.glob": 1, "os.getxattr": 1,
          "os.listxattr": 1, "os.walk": 1, "os.fwalk": 1}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _inside(path, roots):
    if isinstance(path, int):
        return True  # an open file descriptor: it was checked when it was opened
    if path is None:
        path = "."
    p = os.path.realpath(os.fsdecode(path))
    return any(p == r or p.startswith(r + _sep) for r in roots)


def _refuse(event, path=None):
    if path is None:
        raise PermissionError(f"sandbox: {event} is not allowed (no network, no processes, no ctypes)")
    raise PermissionError(f"sandbox: {event} {os.fsdecode(path)!r} is not allowed (files only in the "
                          "working directory)")


def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
        if isinstance(path, (str, bytes)) and os.fsdecode(path) in _read_files and not writing:
            return
        if not _inside(path, (scratch,) if writing else (scratch, *_read_roots)):
            _refuse("writing" if writing else "reading", path if isinstance(path, (str, bytes)) else str(path))
    elif event.startswith(_refused):
        _refuse(event)
    elif event in _writes:
        for path in args[: _writes[event]]:
            if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, (scratch,)):
                _refuse(event, os.fspath(path))
    elif event in _reads:
        path = args[0] if args else None
        if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, (scratch, *_read_roots)):
            _refuse(event, os.fspath(path))


try:
    import ctypes  # noqa: F401  (numpy and sympy import it; loading it opens the interpreter itself)
except ImportError:
    pass
linecache.cache["<code>"] = (len(code), None, code.splitlines(True), "<code>")
compiled = None
try:
    compiled = compile(code, "<code>", "exec")
except SyntaxError:
    traceback.print_exc(limit=0)
    sys.exit(1)
sys.addaudithook(_hook)
del limits, name, value, f
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(compiled, namespace)
except SystemExit:
    raise
except BaseException as e:
    try:
        sys.stdout.flush()  # what was printed before the error comes first
    except BaseException:
        pass
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename != "<string>"]  # not ours
    sys.stderr.write("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
                     + "".join(traceback.format_exception_only(type(e), e)))
    sys.stderr.flush()
    os._exit(1)
'''

_UNSHARE: list[str] | None = None
_UNSHARE_LOCK = threading.Lock()


def _network_isolation() -> list[str]:
    """``["unshare", "-rn"]`` where an unprivileged process may make its own network namespace (probed once
    per process), else ``[]`` (the audit hook alone refuses sockets)."""
    global _UNSHARE
    with _UNSHARE_LOCK:
        if _UNSHARE is None:
            _UNSHARE = []
            unshare = shutil.which("unshare")
            if unshare:
                try:
                    probe = subprocess.run([unshare, "-rn", sys.executable, "-I", "-c", "pass"],
                                           capture_output=True, timeout=30)
                    if probe.returncode == 0:
                        _UNSHARE = [unshare, "-rn"]
                except (OSError, subprocess.SubprocessError):
                    pass
        return list(_UNSHARE)


def _remove_tree(path: str) -> None:
    """Delete ``path`` even where the code took the write permission off its own folders."""

    def retry(func: Callable[..., object], p: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


def _read_head(path: Path, chars: int) -> tuple[str, int]:
    """The first ``chars`` characters of a file and its size in bytes."""
    size = path.stat().st_size
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(chars), size


def _read_tail(path: Path, chars: int) -> tuple[str, int]:
    """The last ``chars`` characters (about) of a file and its size in bytes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - 4 * chars, 0))
        text = f.read().decode("utf-8", errors="replace")
    return text[-chars:], size


def _run(code: str, timeout: float, memory_mb: int, file_size_mb: int, output_chars: int) -> str:
    if not isinstance(code, str):
        raise TypeError(f"code must be a string, got {type(code).__name__}")
    io_dir = tempfile.mkdtemp(prefix="gpgrl-python-io-")
    scratch = tempfile.mkdtemp(prefix="gpgrl-python-")
    try:
        code_file, out_file, err_file = (Path(io_dir) / n for n in ("code.py", "stdout", "stderr"))
        code_file.write_text(code, encoding="utf-8")
        cpu = math.ceil(timeout + CPU_GRACE_S)
        limits = {"code_file": str(code_file), "parent": os.getpid(),
                  "rlimits": {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": cpu, "RLIMIT_FSIZE": file_size_mb << 20,
                              "RLIMIT_CORE": 0}}
        env = {"HOME": scratch, "TMPDIR": scratch, "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [*_network_isolation(), sys.executable, "-I", "-B", "-X", "utf8", "-c", _BOOTSTRAP, scratch,
                   json.dumps(limits)]
        with open(out_file, "wb") as out, open(err_file, "wb") as err:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=scratch,
                                    env=env, start_new_session=True)
            try:
                returncode = proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
                returncode = proc.wait()
        stdout, out_size = _read_head(out_file, output_chars)
        if out_size > len(stdout.encode("utf-8")):
            stdout += f"\n... [output cut: {out_size} bytes printed in all]\n"
        stderr, err_size = _read_tail(err_file, output_chars // 2)
        if err_size > len(stderr.encode("utf-8")):
            stderr = f"[error output cut: {err_size} bytes in all, the end follows]\n...{stderr}"
        output = stdout + (("\n" if stdout and not stdout.endswith("\n") else "") + stderr if stderr else "")
        if timed_out or returncode == -signal.SIGXCPU:
            what = f"{timeout:g} s limit" if timed_out else f"{cpu} s CPU-time limit"
            raise ToolTimeout(f"ran past its {what} and was stopped"
                              + (f"; its output so far:\n{output}" if output else ""))
        if returncode != 0:
            if returncode < 0:
                reason = f"the process was killed by signal {signal.Signals(-returncode).name}"
            else:
                reason = f"exit status {returncode}"
            raise ToolFailed(f"{output}{'' if not output or output.endswith(chr(10)) else chr(10)}[{reason}]")
        return output
    finally:
        _remove_tree(scratch)
        _remove_tree(io_dir)


def python_tool(timeout: float = TIMEOUT_S, memory_mb: int = MEMORY_MB, file_size_mb: int = FILE_SIZE_MB,
                output_chars: int = OUTPUT_CHARS) -> Callable[[str], str]:
    """A ``python`` tool with these limits (wall-clock seconds, address space and file size in MiB,
    characters of output).

    >>> python_tool(timeout=5, memory_mb=256)("import sys; print(sys.flags.isolated)")
    '1\\n'
    """
    if not timeout > 0 or memory_mb <= 0 or file_size_mb <= 0 or output_chars <= 0:
        raise ValueError(f"python_tool limits must be > 0, got timeout={timeout}, memory_mb={memory_mb}, "
                         f"file_size_mb={file_size_mb}, output_chars={output_chars}")

    def python(code: str) -> str:
        """Run Python code in a fresh, isolated Python process and return what it prints (stdout, then any errors). Nothing is kept between calls: print every result you need. No network; files only in the current (scratch) directory.

        Args:
            code: the Python source code to run, e.g. "import math\\nprint(math.factorial(20))"
        """
        return _run(code, timeout, memory_mb, file_size_mb, output_chars)

    python.timeout = timeout  # type: ignore[attr-defined]
    python.in_process = True  # type: ignore[attr-defined]  # bounded by its own limit: the Toolbox calls it directly
    return python


#: The ``python`` tool with the module's default limits.
python = python_tool()

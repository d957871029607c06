"""Set up the project in ``.venv`` and run the quickstart or the tests: the two commands of the README.

Usage (system Python 3.10 or newer, standard library only: it runs before any environment exists)::

    python3 scripts/setup.py quickstart [ARGS...]   # make quickstart [ARGS=...]: set up, then gpgrl quickstart ARGS
    python3 scripts/setup.py test [ARGS...]         # make test [ARGS=...]: set up with the dev extras, then what
                                                    # CI runs (.ci/run calls this): ruff, the two contract
                                                    # installs, pytest -m "not slow" ARGS
    python3 scripts/setup.py test --dry-run         # print the steps (and which are up to date), run nothing

Idempotent: ``.venv`` is created only when it has no working Python; the pip installs are skipped when
the stamp ``.venv/.gpgrl-setup-EXTRAS.json`` matches (the hash of pyproject.toml, the torch pair, the
extras, the Python version and the torch index) and gpgrl imports from this checkout. The contract
installs keep their own ``.complete`` stamps. Every step prints what it runs and how long it took, and the
last line the total. ``GPGRL_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu`` installs the small
CPU-only torch build (where that index has the pinned pair) instead of PyPI's CUDA one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The torch pair the CPU figures were measured with; torchvision loads only with the torch it was built for.
TORCH_PAIR = ("torch==2.14.1", "torchvision==0.29.1")
EXTRAS = {"quickstart": "vision", "test": "dev,vision"}
#: What CI runs once the project is installed (README, "Tests"); the same list for ``make test`` and ``.ci/run``.
TEST_COMMANDS = (
    ("lint", ["ruff", "check", "src", "tests", "benchmarks", "scripts"]),
    ("real vLLM releases for the contract tests, outside .venv", ["bash", "tests/vllm_contract/install.sh"]),
    ("math-verify 0.5.2 for the reward contract, outside .venv", ["bash", "tests/mathverify_contract/install.sh"]),
    ("tests", ["pytest", "-m", "not slow"]),
)


@dataclass
class Step:
    """One command of the plan; ``skip`` says why it need not run (empty: it runs)."""

    what: str
    command: list[str]
    skip: str = ""
    env: dict[str, str] = field(default_factory=dict)


def venv_python(repo: Path) -> Path:
    return repo / ".venv" / "bin" / "python"


def stamp_path(repo: Path, extras: str) -> Path:
    return repo / ".venv" / f".gpgrl-setup-{extras.replace(',', '-')}.json"


def stamp(repo: Path, extras: str, python_version: str, index_url: str) -> dict[str, str]:
    """What an install depends on: when it is unchanged, the installed environment is the one it would make.

    >>> s = stamp(REPO, "vision", "3.11.7", "")
    >>> sorted(s), s["torch"], s["extras"]
    (['extras', 'index_url', 'pyproject_sha256', 'python', 'torch'], 'torch==2.14.1 torchvision==0.29.1', 'vision')
    """
    digest = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    return {"pyproject_sha256": digest, "torch": " ".join(TORCH_PAIR), "extras": extras, "python": python_version,
            "index_url": index_url}


def works(python: Path, repo: Path) -> tuple[str, bool]:
    """The venv Python's version ('' when it does not run) and whether gpgrl imports from this checkout."""
    if not python.exists():
        return "", False
    code = ("import sys, pathlib; import gpgrl; print(sys.version.split()[0]); "
            "print(pathlib.Path(gpgrl.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve()))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the venv's own install, not a path
    try:
        out = subprocess.run([str(python), "-c", code, str(repo / "src")], capture_output=True, text=True, env=env,
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "", False
    lines = out.stdout.split()
    if out.returncode == 0 and len(lines) == 2:
        return lines[0], lines[1] == "True"
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                             text=True, timeout=60)
    return (version.stdout.strip() if version.returncode == 0 else ""), False


def plan(target: str, repo: Path, args: list[str], *, python_version: str, installed: bool, index_url: str = "",
         system_python: str = sys.executable) -> list[Step]:
    """The steps of ``target`` (quickstart or test) for a checkout whose ``.venv`` runs ``python_version``
    ('' when there is none) and has gpgrl installed from the checkout (``installed``).

    >>> steps = plan("test", REPO, ["-x"], python_version="", installed=False, system_python="python3")
    >>> [" ".join(s.command) for s in steps][:2]
    ['python3 -m venv .venv', '.venv/bin/python -m pip install --upgrade pip']
    >>> [" ".join(s.command) for s in steps][-1]
    'pytest -m not slow -x'
    """
    extras = EXTRAS[target]
    py = ".venv/bin/python"
    steps = [Step("Python environment .venv", [system_python, "-m", "venv", ".venv"],
                  skip=f"there (Python {python_version})" if python_version else "")]
    recorded = stamp_path(repo, extras)
    current = stamp(repo, extras, python_version, index_url) if python_version else None
    up_to_date = bool(installed and current and recorded.is_file() and _read(recorded) == current)
    skip = "up to date (stamp matches pyproject.toml, the torch pair and the extras)" if up_to_date else ""
    index = ["--index-url", index_url] if index_url else []
    steps += [
        Step("pip", [py, "-m", "pip", "install", "--upgrade", "pip"], skip=skip),
        Step("the torch pair", [py, "-m", "pip", "install", *TORCH_PAIR, *index], skip=skip),
        Step(f"gpgrl with [{extras}], editable", [py, "-m", "pip", "install", "-e", f".[{extras}]"], skip=skip),
    ]
    if target == "quickstart":
        steps.append(Step("the quickstart", [".venv/bin/gpgrl", "quickstart", *args]))
    else:
        steps += [Step(what, [*command, *args] if command[0] == "pytest" else command)
                  for what, command in TEST_COMMANDS]
    return steps


def _read(path: Path) -> dict[str, str] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(target: str, args: list[str], *, dry_run: bool = False, repo: Path = REPO) -> int:
    label = f"[setup {target}]"
    if sys.version_info < (3, 10):  # noqa: UP036 (the system Python that runs this may be older than gpgrl's)
        print(f"{label} needs Python 3.10 or newer to create .venv; this is {sys.version.split()[0]} "
              f"({sys.executable})")
        return 2
    index_url = os.environ.get("GPGRL_TORCH_INDEX_URL", "")
    version, installed = works(venv_python(repo), repo)
    steps = plan(target, repo, args, python_version=version, installed=installed, index_url=index_url)
    env = {**os.environ, "VIRTUAL_ENV": str(repo / ".venv"),
           "PATH": os.pathsep.join([str(repo / ".venv" / "bin"), os.environ.get("PATH", "")])}
    env.pop("PYTHONHOME", None)
    start = time.perf_counter()
    for i, step in enumerate(steps, 1):
        shown = " ".join(c if " " not in c else repr(c) for c in step.command)
        head = f"{label} {i}/{len(steps)} {step.what}:"
        if step.skip:
            print(f"{head} {step.skip}", flush=True)
            continue
        print(f"{head} {shown}", flush=True)
        if dry_run:
            continue
        t0 = time.perf_counter()
        code = subprocess.run(step.command, cwd=repo, env=env).returncode
        seconds = time.perf_counter() - t0
        if code:
            print(f"{label} {i}/{len(steps)} failed (exit {code}) after {seconds:.1f} s: {shown}", flush=True)
            if target == "quickstart" and step.command[0].endswith("gpgrl"):
                print(f"{label} options go to gpgrl quickstart through ARGS, e.g. make quickstart ARGS=--overwrite",
                      flush=True)
            return code
        print(f"{label} {i}/{len(steps)} done in {seconds:.1f} s", flush=True)
        if step.what.startswith("gpgrl with"):  # the environment is complete: record what it was made from
            version, _ = works(venv_python(repo), repo)
            stamp_path(repo, EXTRAS[target]).write_text(json.dumps(stamp(repo, EXTRAS[target], version, index_url)))
    ran = sum(1 for s in steps if not s.skip)
    verb = "would run" if dry_run else "ran"
    print(f"{label} {verb} {ran} of {len(steps)} steps ({len(steps) - ran} up to date) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    target, rest = argv[0], argv[1:]
    dry = "--dry-run" in rest
    return run(target, [a for a in rest if a != "--dry-run"], dry_run=dry)


if __name__ == "__main__":
    raise SystemExit(main())

"""``gpgrl doctor``: what a bug report needs, and what each feature is missing, in one short report.

usage: gpgrl doctor [--output_dir DIR]

It prints the versions and the machine (gpgrl and where it is imported from, Python, the platform, torch's
build and threads, the GPUs, transformers / accelerate / datasets), then one line per feature: ``ok``, or
what is missing and the one command that fixes it (the vLLM engines and whether the installed vLLM is in
the supported range, the real model file, LoRA, vision, wandb, DeepSpeed, the benchmark data folder, write
access to the output folder). Nothing is loaded (no model, no ``import vllm``) and nothing is left on disk:
the write check creates and deletes one temporary file. --output_dir DIR checks DIR (default: training's
default, runs/gpgrl). The exit status is 0 when the core (gpgrl's own dependencies and torch) works,
whatever optional part is missing; 1 when the core is broken.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

USAGE = __doc__.split("\n\n", 1)[1].strip()

#: What each status means for the exit code: only a broken core fails.
OK, MISSING, UNSUPPORTED, BROKEN = "ok", "missing", "unsupported", "broken"
#: The distributions every feature needs, checked when gpgrl is not installed (its metadata lists them otherwise).
CORE = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "pyyaml", "math-verify")
FETCH_REAL_MODEL = "gpgrl models fetch smollm2"


@dataclass(frozen=True)
class Finding:
    """One line of the report: a feature's status, what was found, and the one fix when it is not ok."""

    status: str
    what: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """
        >>> Finding("missing", "LoRA", "peft not installed", "pip install 'gpgrl[peft]'").line()
        "  missing      LoRA: peft not installed; fix: pip install 'gpgrl[peft]'"
        """
        return f"  {self.status:<12} {self.what}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution (from its metadata, without importing it), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def in_range(version: str, specifier: str) -> bool:
    """Whether ``version`` satisfies ``specifier`` (pre-releases and local builds count).

    >>> in_range("0.17.1+cu128", ">=0.17,<0.35"), in_range("0.35.0rc1", ">=0.17,<0.35"), in_range("0.9.2", ">=0.17")
    (True, False, False)
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return SpecifierSet(specifier).contains(Version(version), prereleases=True)


def gpgrl_install() -> str:
    """Which gpgrl this process runs, and how it is installed (editable, from where), in words."""
    import gpgrl

    here = Path(gpgrl.__file__).resolve().parent
    try:
        dist = metadata.distribution("gpgrl")
    except metadata.PackageNotFoundError:
        return f"{here} (not installed: imported through PYTHONPATH or the working directory)"
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        source = Path(direct.get("url", "").removeprefix("file://"))
        how = f"editable install of {source}"
        elsewhere = here not in (source / "src" / "gpgrl", source / "gpgrl")
    else:
        site = Path(str(dist.locate_file(""))).resolve()
        how = f"installed in {site}"
        elsewhere = not here.is_relative_to(site)
    return f"{here} ({how}" + ("; this process imports another copy: PYTHONPATH?)" if elsewhere else ")")


def environment() -> tuple[list[tuple[str, str]], list[Finding]]:
    """``(name, value)`` facts a bug report needs, and the core's problems (broken findings)."""
    from gpgrl import __version__

    facts = [("gpgrl", f"{__version__} at {gpgrl_install()}"),
             ("python", f"{platform.python_version()} ({sys.executable})"),
             ("platform", platform.platform())]
    try:
        import torch
    except Exception as e:  # an ImportError, or a broken build's RuntimeError / OSError
        facts.append(("torch", f"cannot be imported: {type(e).__name__}: {e}"))
        return facts, [Finding(BROKEN, "torch", f"cannot be imported ({type(e).__name__})", "pip install 'torch>=2.4'")]
    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    build = f"CUDA {cuda} build" if cuda else f"ROCm {hip} build" if hip else "CPU-only build"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts += [("torch", f"{torch.__version__}, {build}; {torch.get_num_threads()} threads, {usable} usable cores "
                        f"of {os.cpu_count()}")]
    facts += [("GPU", gpus(torch))]
    for name in ("transformers", "accelerate", "datasets"):
        facts.append((name, installed_version(name) or "not installed"))
    return facts, core_problems()


def gpus(torch) -> str:
    """The GPUs torch sees, with their memory, or why there are none."""
    if not torch.cuda.is_available():
        if torch.version.cuda:
            return "none visible (this CUDA build sees no GPU: driver, CUDA_VISIBLE_DEVICES?); training runs on the CPU"
        return "none (CPU-only torch); training runs on the CPU"
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, compute {p.major}.{p.minor}")
    return "; ".join(out)


def core_problems() -> list[Finding]:
    """gpgrl's own dependencies that are missing or outside their range (from gpgrl's metadata when it is
    installed, else :data:`CORE`)."""
    from packaging.requirements import Requirement

    try:
        requires = [Requirement(r) for r in metadata.requires("gpgrl") or []]
        requires = [r for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})]
    except metadata.PackageNotFoundError:
        requires = [Requirement(name) for name in CORE]
    out = []
    for req in requires:
        found = installed_version(req.name)
        if found is None:
            out.append(Finding(BROKEN, req.name, "not installed (gpgrl needs it)", f"pip install '{req}'"))
        elif req.specifier and not in_range(found, str(req.specifier)):
            out.append(Finding(BROKEN, req.name, f"{found} installed, gpgrl needs {req.specifier}",
                               f"pip install '{req}'"))
    return out


def features(output_dir: str) -> list[Finding]:
    """One finding per optional feature, each with its fix."""
    return [vllm_finding(), *real_model_findings(), extra("LoRA (model.lora_r)", ("peft",), "pip install 'gpgrl[peft]'"),
            vision_finding(), extra("wandb (log.report_to wandb)", ("wandb",), "pip install 'gpgrl[wandb]'"),
            extra("DeepSpeed (recipes/accelerate/zero2.yaml, zero3.yaml)", ("deepspeed",), "pip install deepspeed"),
            *data_findings(), output_finding(output_dir)]


def extra(what: str, distributions: tuple[str, ...], fix: str) -> Finding:
    versions = {d: installed_version(d) for d in distributions}
    missing = [d for d, v in versions.items() if v is None]
    if missing:
        return Finding(MISSING, what, f"{', '.join(missing)} not installed", fix)
    return Finding(OK, what, ", ".join(f"{d} {v}" for d, v in versions.items()))


def vllm_finding() -> Finding:
    """The installed vLLM (read from its metadata: vLLM is never imported here) against the supported range."""
    from gpgrl.rollout.vllm import SUPPORTED_VLLM

    what, fix = "vLLM engines (rollout.engine vllm / vllm_server)", f"pip install 'vllm{SUPPORTED_VLLM}' (docs/engines.md)"
    found = installed_version("vllm")
    if found is None:
        return Finding(MISSING, what, "vllm not installed (a GPU machine; vLLM pins its own torch)", fix)
    if not in_range(found, SUPPORTED_VLLM):
        return Finding(UNSUPPORTED, what, f"vllm {found} is outside the supported range {SUPPORTED_VLLM}", fix)
    return Finding(OK, what, f"vllm {found} (supported: {SUPPORTED_VLLM})")


def real_model_findings() -> list[Finding]:
    """The gguf reader and the real model's file (``--model smollm2``), found as training finds it."""
    from gpgrl.model_files import GGUF_REQUIREMENT, PACKAGED_GGUF, packaged_gguf  # no torch, no transformers

    reader = extra("GGUF model files (.gguf, smollm2)", ("gguf",), f"pip install '{GGUF_REQUIREMENT}' (or {FETCH_REAL_MODEL})")
    out = []
    for name in PACKAGED_GGUF:
        try:
            path = packaged_gguf(name)
        except (ImportError, FileNotFoundError) as e:
            out.append(Finding(MISSING, f"real model {name}", str(e).split(":")[0], f"{FETCH_REAL_MODEL}"))
        else:
            out.append(Finding(OK, f"real model {name}", f"{path} ({path.stat().st_size / 2**20:.0f} MiB)"))
    return [reader, *out]


def vision_finding() -> Finding:
    """torchvision and Pillow, imported as the trainer's check imports them (a torchvision built for another
    torch fails only then)."""
    from gpgrl.models.vision import VISION_INSTALL, require_vision

    what = "vision models (data.image_column)"
    try:
        require_vision()
    except ImportError as e:
        cause = str(e).removeprefix(VISION_INSTALL).strip(" ()") or "torchvision or Pillow missing"
        return Finding(MISSING, what, cause, "pip install 'gpgrl[vision]' (README: the CPU torch/torchvision pair)")
    return Finding(OK, what, f"torchvision {installed_version('torchvision')}, pillow {installed_version('pillow')}")


def data_findings() -> list[Finding]:
    """The benchmark data folder (:func:`gpgrl.paths.find_data_dir`, as eval and the tests find it) and its
    subfolders."""
    from gpgrl.paths import DATA_SUBFOLDERS, ENV, find_data_dir

    what = "benchmark data (gpgrl eval on local files, the tests)"
    fix = f"export {ENV}=DIR, the folder holding {' and '.join(f'{s}/' for s in DATA_SUBFOLDERS)}"
    found = find_data_dir()
    if found is None:
        return [Finding(MISSING, what, f"no folder: {ENV} is unset and there is no ../shared/data beside a source "
                                       "checkout (eval reads the Hugging Face Hub)", fix)]
    if not found.path.is_dir():
        return [Finding(MISSING, what, f"{found.describe()} does not exist", fix)]
    out = [Finding(OK, what, found.describe())]
    for sub, holds in DATA_SUBFOLDERS.items():
        if (found.path / sub).is_dir():
            out.append(Finding(OK, f"  {sub}/", holds))
        else:
            out.append(Finding(MISSING, f"  {sub}/", f"{found.path / sub} does not exist ({holds})", fix))
    return out


def output_finding(output_dir: str) -> Finding:
    """Write access to ``output_dir``, checked by creating and deleting one temporary file in it (or, when it
    does not exist yet, in the nearest folder above it, where training would create it); nothing is left."""
    target = Path(output_dir).expanduser()
    existing = target.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    what = f"output folder {output_dir}"
    fix = "pick a writable folder with --train.output_dir DIR (gpgrl doctor --output_dir DIR checks it)"
    if not existing.is_dir():
        return Finding(MISSING, what, f"{existing} is a file, not a folder", fix)
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".gpgrl-doctor-"):
            pass
    except OSError as e:
        return Finding(MISSING, what, f"cannot write in {existing} ({e.strerror or e})", fix)
    if existing == target.absolute():
        return Finding(OK, what, f"{existing} is writable")
    return Finding(OK, what, f"does not exist yet; training creates it in {existing}, which is writable")


def report_lines(output_dir: str | None = None, core: list[bool] | None = None) -> Iterator[str]:
    """The report, line by line as each check ends (the first before torch is imported, so a slow import is
    not silent); ``core`` receives whether the core works. ``output_dir`` None: training's default."""
    yield "gpgrl doctor: paste this into a bug report"
    yield ""
    facts, broken = environment()
    width = max(len(name) for name, _ in facts) + 2
    yield from (f"{name:<{width}}{value}" for name, value in facts)
    if core is not None:
        core.append(not broken)
    if broken:
        yield from ("", "core (gpgrl does not work without these):", *(f.line() for f in broken),
                    "", "features: not checked until the core works")
        return
    if output_dir is None:
        from gpgrl.config import TrainConfig

        output_dir = TrainConfig().output_dir  # where training writes by default
    yield from ("", "features:")
    yield from (f.line() for f in features(output_dir))


def report(output_dir: str | None = None) -> tuple[str, bool]:
    """The report's text, and whether the core works."""
    core: list[bool] = []
    text = "\n".join(report_lines(output_dir, core))
    return text, core[0]


def main(args: list[str]) -> int:
    """``gpgrl doctor [--output_dir DIR]``: print the report; 0 unless the core is broken (1), 2 on bad usage."""
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    output_dir = None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        key, eq, value = arg.partition("=")
        if key in ("--output_dir", "--output-dir", "--train.output_dir"):
            if not (eq or rest):
                print(f"gpgrl doctor: error: {key} needs a folder: gpgrl doctor {key} DIR", file=sys.stderr)
                return 2
            output_dir = value if eq else rest.pop(0)
        else:
            print(f"gpgrl doctor: error: unexpected argument {arg!r}; usage: gpgrl doctor [--output_dir DIR]",
                  file=sys.stderr)
            return 2
    core: list[bool] = []
    for line in report_lines(output_dir, core):
        print(line, flush=True)
    return 0 if core[0] else 1

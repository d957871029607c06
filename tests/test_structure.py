"""The package's shape: no import circles, a small public API, a trainer that only orders the step."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str], *, inside_functions: bool) -> set[str]:
    """gpgrl modules that ``path`` imports, outside ``if TYPE_CHECKING:``: the module-level statements
    (run when ``path`` is imported), and with ``inside_functions`` also the imports inside functions
    (run when they are called), which form circles just as well."""
    tree = ast.parse(path.read_text())
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()

    def add(node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
            return
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in modules else base)

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                add(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if inside_functions:
                    visit(list(ast.iter_child_nodes(node)))  # type: ignore[arg-type]
            elif isinstance(node, ast.AST):
                visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(tree.body)
    return {m for m in found if m in modules and m != own}


def _graph(inside_functions: bool) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: _imports(path, set(files), inside_functions=inside_functions) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles: list[str] = []

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
    return cycles


def test_the_import_reader_sees_function_level_imports():
    graph = _graph(inside_functions=True)
    assert "gpgrl.train.checkpoint" in graph["gpgrl.cli"]  # imported inside cmd_train, not at the top
    assert "gpgrl.train.checkpoint" not in _graph(inside_functions=False)["gpgrl.cli"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]


# The package's layers, lowest first: a module may import its own layer and those below, never one above
# ("an arrow back up"), inside functions included. Training orders rollouts, rewards and the maths;
# evaluation reuses rollouts, prompts and rewards; the applications (tasks: the quickstart and its warm
# start, which drive the trainer) and the command line sit on top. The generated datasets are data.
LAYERS = (
    ("runtime", "parallel", "algorithms", "model_files", "user_code"),  # model_files: the packaged GGUF files (no torch)
    ("models", "rewards", "paths", "tools"),  # paths: where the benchmark data is; tools: an episode's tools
    ("rollout",),
    ("data",),
    ("eval",),
    ("config",),
    ("openr1",),  # the original's flat recipes, translated into the config's sections
    ("recipe",),  # reading a recipe of either kind
    ("train", "dry_run"),
    ("tasks",),  # the applications: the quickstart and its supervised warm start (they use the trainer)
    ("cli", "doctor", ""),  # "": the package's own __init__
)


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS: add its package there")


def test_no_import_circles():
    for inside_functions in (False, True):
        cycles = _cycles(_graph(inside_functions))
        kind = "with function-level imports" if inside_functions else "at import time"
        assert not cycles, f"import circles ({kind}):\n" + "\n".join(cycles)


def test_no_arrow_back_up():
    graph = _graph(inside_functions=True)
    up = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if _layer(b) > _layer(a))
    assert not up, "imports from a higher layer (see LAYERS):\n" + "\n".join(up)


_STRING_PATH = re.compile(r"gpgrl(?:\.\w+)+(?::\w+)?")


def _string_paths(source: str) -> list[str]:
    """The gpgrl modules that ``source`` names in a string that is a whole module path (``"gpgrl.a.b"`` or
    ``"gpgrl.a.b:attr"``, the form ``importlib``, ``__import__`` and the "module:attr" registries load),
    docstrings (prose and doctests) left out: the imports an import reader cannot see.
    """
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [node.value.strip().partition(":")[0] for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and _STRING_PATH.fullmatch(node.value.strip())]


def test_no_string_path_back_up():
    """A registry of ``"module:attr"`` strings is an import the import reader cannot see: a lower layer must
    not name a higher one that way either (as data once named the tasks' datasets, loaded at run time)."""
    assert _string_paths("'gpgrl.tasks.x:y in a docstring'\nX = {'a': 'gpgrl.tasks.arithmetic:Task', 'b': 'gpgrl',"
                         " 'c': 'see gpgrl.tasks'}") == ["gpgrl.tasks.arithmetic"]
    found = {(_module_name(p), m) for p in SRC.rglob("*.py") for m in _string_paths(p.read_text())}
    assert "gpgrl.data.datasets" in {a for a, _ in found}  # the reader sees the builtin registry
    up = sorted(f"{a} -> {b!r}" for a, b in found if _layer(b) > _layer(a))
    assert not up, "string paths into a higher layer (see LAYERS):\n" + "\n".join(up)


def test_the_engine_choices_are_the_engine_registry():
    """``rollout.engine``'s ``Literal`` (config.py: --help and the recipe check read it) and the builders
    (rollout/registry.py) name the same engines, and every builder takes the typed config and accelerator."""
    import inspect
    import typing

    from gpgrl.config import RolloutConfig
    from gpgrl.rollout.registry import ENGINES

    choices = typing.get_args(typing.get_type_hints(RolloutConfig)["engine"])
    assert sorted(choices) == sorted(ENGINES) == ["hf", "vllm", "vllm_server"]
    typed = {name: [str(p.annotation) for p in inspect.signature(build).parameters.values()][:2]
             for name, build in ENGINES.items()}
    assert typed == {name: ["Config", "Accelerator"] for name in ENGINES}, typed


def _functions() -> list[tuple[str, int, int]]:
    """``(where, lines, parameters)`` of every function in src/ (self and cls not counted)."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                params = len(names) + (a.vararg is not None) + (a.kwarg is not None) - (names[:1] in (["self"], ["cls"]))
                where = f"{path.relative_to(SRC)}:{node.lineno} {node.name}"
                out.append((where, node.end_lineno - node.lineno + 1, params))  # type: ignore[operator]
    return out


def test_functions_stay_readable():
    """No function in src/ over 130 lines or 15 parameters: past that, split it or pass a settings object."""
    found = _functions()
    assert any(lines > 20 for _, lines, _ in found)  # the reader works
    too_long = [f"{w}: {n} lines" for w, n, _ in found if n > 130]
    too_many = [f"{w}: {p} parameters" for w, _, p in found if p > 15]
    assert not too_long + too_many, "\n".join(too_long + too_many)


def test_public_api_names_and_a_fast_import():
    code = ("import sys, gpgrl; assert 'torch' not in sys.modules; "
            "from gpgrl import Trainer, Config, get_preset, group_advantages, policy_loss, get_reward; "
            "print(get_preset('gpg').name, get_reward('format_v2').__name__, Trainer.__name__, Config.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gpg", "think_close", "Trainer", "Config"]

"""Tests of gpgrl.tools: the calculator, the hermes call format, the Toolbox's error kinds and limits, user
tools run in killable workers, and the python sandbox. Every limit is checked with generous margins (a 1 s
timeout must end well within 15 s); nothing asserts a speed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gpgrl.tools import (
    CALL_FORMATS,
    ERROR_KINDS,
    TOOLS,
    CallFormat,
    Toolbox,
    ToolCall,
    ToolFailed,
    ToolLoadError,
    ToolResult,
    ToolTimeout,
    calculator,
    get_tool,
    python_tool,
    register_call_format,
)
from gpgrl.tools.formats import HERMES

USER_TOOLS = '''
import os
import time


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first integer
        b: the second integer
    """
    return a + b


def stats(values: list[float], label: str = "x") -> dict:
    """Summarise numbers.

    Args:
        values: the numbers
        label: a name for them
    """
    return {"label": label, "n": len(values), "sum": sum(values)}


def sleepy(seconds: float, mark: str) -> str:
    """Sleep, writing the process id and the start and end times to a file.

    Args:
        seconds: how long to sleep
        mark: the file to write to
    """
    with open(mark, "w") as f:
        f.write(f"{os.getpid()} {time.time()!r}\\n")
    time.sleep(seconds)
    with open(mark, "a") as f:
        f.write(f"{time.time()!r}\\n")
    return "slept"


def whoami() -> int:
    """The process id of the process the tool runs in."""
    return os.getpid()


def boom(key: str) -> str:
    """Always raises.

    Args:
        key: a key
    """
    raise KeyError(key)


def long_text(n: int) -> str:
    """A long text.

    Args:
        n: its length
    """
    return "ab" * (n // 2)


def no_doc(x: int) -> int:
    return x


def no_hints(x):
    """No type hints.

    Args:
        x: a number
    """
    return x
'''


@pytest.fixture(scope="module")
def tools_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("usertools") / "tools.py"
    path.write_text(USER_TOOLS)
    return path


def call(name: str, arguments: object) -> str:
    """One hermes tool call as a Qwen model writes it."""
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# calculator
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "value"), [
    ("1234*5678", "7006652"),
    ("0.1 + 0.2", "0.3"),            # exact, not 0.30000000000000004
    ("2**100", "1267650600228229401496703205376"),
    ("10/4", "2.5"),
    ("1/8", "0.125"),
    ("-7 // 2", "-4"),
    ("-7 % 3", "2"),
    ("(2 + 3) * -4", "-20"),
    ("2**-3", "0.125"),
    ("1/3", "1/3 ≈ 0.333333333333333"),
    ("22/7 - 3", "1/7 ≈ 0.142857142857143"),
    ("1.5e3 * 2", "3000"),
    ("(-1)**1000001", "-1"),
])
def test_calculator_is_exact(expression: str, value: str) -> None:
    assert calculator(expression) == value


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os')", "not a function call"),
    ("x + 1", "not a name"),
    ("(1).__class__", "not an attribute"),
    ("2^3", "write powers as **"),
    ("2**0.5", "whole-number exponents"),
    ("9**9**9", "digits; the calculator stops at 4000"),
    ("10**5000", "digits; the calculator stops at 4000"),
    ("1 +", "is not an arithmetic expression"),
    ("True + 1", "not True"),
])
def test_calculator_refuses_what_is_not_arithmetic(expression: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("(", r"\(").replace(".", r"\.")):
        calculator(expression)
    assert time.monotonic() - start < 10  # refused, not computed (9**9**9 has 350 million digits)


def test_calculator_division_by_zero_is_a_clear_error() -> None:
    for expression in ("1/0", "5 // (2-2)", "3 % 0", "0**-1"):
        with pytest.raises(ZeroDivisionError, match="division by zero"):
            calculator(expression)


# ---------------------------------------------------------------------------------------------------
# hermes call format
# ---------------------------------------------------------------------------------------------------


def test_hermes_parses_one_and_several_calls_in_order() -> None:
    text = ("I will compute both.\n" + call("calculator", {"expression": "2+2"}) + "\n"
            + call("python", {"code": "print(1)"}))
    assert HERMES.parse(text) == [ToolCall("calculator", {"expression": "2+2"}),
                                  ToolCall("python", {"code": "print(1)"})]
    assert HERMES.parse("The answer is \\boxed{4}.") == []


def test_hermes_accepts_arguments_as_a_json_string_and_a_call_left_open() -> None:
    qwen_string = '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>'
    assert HERMES.parse(qwen_string) == [ToolCall("add", {"a": 1, "b": 2})]
    assert HERMES.parse('<tool_call>\n{"name": "whoami"}') == [ToolCall("whoami", {})]  # ended at EOS
    raw_newlines = '<tool_call>\n{"name": "python", "arguments": {"code": "x = 2\nprint(x)"}}\n</tool_call>'
    assert HERMES.parse(raw_newlines) == [ToolCall("python", {"code": "x = 2\nprint(x)"})]


@pytest.mark.parametrize(("body", "message"), [
    ('{"name": "add", "arguments": {"a": 1}', "is not valid JSON"),
    ('{"arguments": {"a": 1}}', 'has no "name"'),
    ('{"name": 3, "arguments": {}}', 'has no "name"'),
    ('["add", 1]', "is a JSON list, not an object"),
    ('{"name": "add", "arguments": "[1, 2]"}', 'are a JSON list, not an object'),
    ('{"name": "add", "arguments": "a=1"}', "a string that is not a JSON object"),
])
def test_hermes_malformed_calls_become_malformed_results(body: str, message: str) -> None:
    (result,) = HERMES.parse(f"<tool_call>{body}</tool_call>")
    assert isinstance(result, ToolResult)
    assert (result.name, result.error) == ("", "malformed")
    assert message in result.content
    assert '<tool_call>{"name": "<tool name>", "arguments": {"<parameter>": <value>}}</tool_call>' in result.content


def test_a_registered_call_format_is_used_by_the_toolbox() -> None:
    class Bracket(CallFormat):
        def parse(self, text: str) -> list[ToolCall | ToolResult]:
            return [ToolCall("calculator", {"expression": e}) for e in text.split("[calc ")[1:]
                    for e in [e.split("]")[0]]]

    register_call_format("bracket", Bracket())
    try:
        box = Toolbox(["calculator"], call_format="bracket")
        assert box.run("so [calc 6*7] and [calc 1/4]") == [ToolResult("calculator", "42"),
                                                          ToolResult("calculator", "0.25")]
    finally:
        del CALL_FORMATS["bracket"]
    with pytest.raises(ValueError, match="unknown tool call format 'hermez' \\(did you mean 'hermes'\\?\\)"):
        Toolbox(["calculator"], call_format="hermez")


# ---------------------------------------------------------------------------------------------------
# Toolbox: schemas, lookup, error kinds
# ---------------------------------------------------------------------------------------------------


def test_schemas_are_get_json_schemas_of_the_builtins() -> None:
    from transformers.utils import get_json_schema

    box = Toolbox(["calculator", "python"], timeout=5)
    assert box.names == ["calculator", "python"]
    assert box.schemas == [get_json_schema(f) for f in box.functions]
    calc, py = (s["function"] for s in box.schemas)
    assert calc["parameters"] == {"type": "object", "properties": {"expression": {
        "type": "string", "description": calc["parameters"]["properties"]["expression"]["description"]}},
        "required": ["expression"]}
    assert calc["description"].startswith("Evaluate an arithmetic expression exactly")
    assert py["name"] == "python" and py["parameters"]["required"] == ["code"]
    assert py["parameters"]["properties"]["code"]["type"] == "string"
    assert box.functions[1].timeout == 5  # the Toolbox's timeout is the python tool's wall-clock limit


def test_get_tool_resolves_names_and_suggests_the_nearest(tools_file: Path) -> None:
    assert get_tool("calculator") is TOOLS["calculator"]
    assert get_tool(f"{tools_file}:add")(2, 3) == 5
    with pytest.raises(ToolLoadError, match="unknown tool 'pyhton' \\(did you mean 'python'\\?\\); valid names: "
                                            "calculator, python"):
        get_tool("pyhton")
    with pytest.raises(ToolLoadError, match="has no 'ad'; did you mean 'add'\\?"):
        get_tool(f"{tools_file}:ad")
    with pytest.raises(ToolLoadError, match=r"^tool 'no_such_module_xyz:f': no module 'no_such_module_xyz'"):
        get_tool("no_such_module_xyz:f")


def test_a_tool_without_docstring_or_hints_fails_at_construction(tools_file: Path) -> None:
    with pytest.raises(ToolLoadError, match=r"tool 'no_doc' cannot be described to the model .*no docstring.*"
                                            r"'Args:' section"):
        Toolbox([f"{tools_file}:no_doc"])
    with pytest.raises(ToolLoadError, match=r"tool 'no_hints' cannot be described .*missing a type hint"):
        Toolbox([f"{tools_file}:no_hints"])
    with pytest.raises(ToolLoadError, match="two tools are named 'calculator'"):
        Toolbox(["calculator", calculator])


def test_each_error_kind_is_a_tool_message_and_is_counted(tools_file: Path, tmp_path: Path) -> None:
    with Toolbox(["calculator", f"{tools_file}:add", f"{tools_file}:sleepy"], timeout=1) as box:
        turn = "\n".join([
            call("calculator", {"expression": "6*7"}),
            "<tool_call>{not json}</tool_call>",
            call("calc", {"expression": "1"}),
            call("add", {"a": 1, "c": 2}),
            call("add", {"a": "1", "b": 2}),
            call("calculator", {"expression": "1/0"}),
            call("sleepy", {"seconds": 60, "mark": str(tmp_path / "mark")}),
        ])
        results = box.run(turn)
        assert results is not None
        assert [(r.name, r.error) for r in results] == [
            ("calculator", None), ("", "malformed"), ("calc", "unknown_tool"), ("add", "bad_arguments"),
            ("add", "bad_arguments"), ("calculator", "exception"), ("sleepy", "timeout")]
        assert results[0].content == "42"
        assert results[2].content == ("error: unknown tool 'calc' (did you mean 'calculator'?); the tools are: "
                                      "calculator, add, sleepy")
        assert results[3].content == ("error: bad arguments for add: unknown argument 'c'; missing required "
                                      "argument 'b'; the parameters are add(a: integer, b: integer)")
        assert results[4].content == ("error: bad arguments for add: 'a' must be integer, got string; the "
                                      "parameters are add(a: integer, b: integer)")
        assert results[5].content == "error: calculator raised ZeroDivisionError: division by zero"
        assert results[6].content == "error: sleepy ran past its 1 s limit and was killed"
        assert results[1].message() == {"role": "tool", "name": "", "content": results[1].content}
        assert dict(box.counts) == {"calls": 7, "malformed": 1, "unknown_tool": 1, "bad_arguments": 2,
                                    "exception": 1, "timeout": 1}
        assert set(box.counts) == {"calls", *ERROR_KINDS}
        assert box.run("No tool needed: the answer is 42.") is None
        assert box.counts["calls"] == 7


def test_a_user_tool_loaded_by_path_runs_in_a_worker_process(tools_file: Path) -> None:
    with Toolbox([f"{tools_file}:add", f"{tools_file}:stats", f"{tools_file}:whoami",
                  f"{tools_file}:boom"]) as box:
        assert box.run(call("add", {"a": 2, "b": 3})) == [ToolResult("add", "5")]
        assert box.run(call("stats", {"values": [1, 2.5]})) == [
            ToolResult("stats", '{"label": "x", "n": 2, "sum": 3.5}')]  # dicts come back as JSON
        assert box.run(call("stats", {"values": "1,2"}))[0].content.startswith(
            "error: bad arguments for stats: 'values' must be array, got string")
        (pid,) = box.run(call("whoami", {}))
        assert pid.error is None and int(pid.content) != os.getpid()
        assert box.run(call("boom", {"key": "k"})) == [ToolResult("boom", "error: boom raised KeyError: 'k'",
                                                                  "exception")]
        # the worker survives an exception: the next call is answered by the same process
        assert box.run(call("whoami", {})) == [pid]
    assert not alive(int(pid.content))  # close() stopped it


def test_a_hanging_user_tool_is_killed_at_its_timeout(tools_file: Path, tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    with Toolbox([f"{tools_file}:sleepy"], timeout=1) as box:
        start = time.monotonic()
        (result,) = box.run(call("sleepy", {"seconds": 60, "mark": str(mark)}))
        assert time.monotonic() - start < 15
        assert result == ToolResult("sleepy", "error: sleepy ran past its 1 s limit and was killed", "timeout")
        pid = int(mark.read_text().split()[0])
        assert not alive(pid)  # killed and reaped, not left sleeping
        assert len(mark.read_text().splitlines()) == 1  # it never got to write its end time
        # the next call starts a fresh worker
        (again,) = box.run(call("sleepy", {"seconds": 0, "mark": str(mark)}))
        assert again == ToolResult("sleepy", "slept")
        assert int(mark.read_text().split()[0]) != pid


def test_run_many_runs_the_calls_of_all_episodes_at_once(tools_file: Path, tmp_path: Path) -> None:
    marks = [tmp_path / f"mark{i}" for i in range(3)]
    with Toolbox(["calculator", f"{tools_file}:sleepy"], timeout=60) as box:
        results = box.run_many([call("sleepy", {"seconds": 1, "mark": str(m)}) for m in marks]
                               + ["an answer", call("calculator", {"expression": "2*3"})])
    assert results == [[ToolResult("sleepy", "slept")]] * 3 + [None, [ToolResult("calculator", "6")]]
    times = [[float(x) for x in m.read_text().split()[1:]] for m in marks]
    starts, ends = [t[0] for t in times], [t[1] for t in times]
    assert max(starts) < min(ends)  # all three were sleeping at the same moment
    assert len({int(m.read_text().split()[0]) for m in marks}) == 3  # in three worker processes


def test_a_function_passed_as_an_object(tools_file: Path) -> None:
    from gpgrl.tools.registry import load_user_tool

    whoami = load_user_tool(f"{tools_file}:whoami")  # importable: it runs in a killable worker
    with Toolbox([whoami]) as box:
        assert int(box.run(call("whoami", {}))[0].content) != os.getpid()

    release = threading.Event()

    def wait_for(seconds: float) -> str:
        """Wait (a closure: runs in a thread, which cannot be killed).

        Args:
            seconds: how long at most
        """
        release.wait(seconds)
        return "done"

    box = Toolbox([wait_for], timeout=1)
    start = time.monotonic()
    (result,) = box.run(call("wait_for", {"seconds": 60}))
    assert time.monotonic() - start < 15
    assert result.error == "timeout" and "its call was abandoned" in result.content
    release.set()
    assert box.run(call("wait_for", {"seconds": 0})) == [ToolResult("wait_for", "done")]


def test_long_results_are_cut_with_a_marker(tools_file: Path) -> None:
    with Toolbox([f"{tools_file}:long_text"], max_result_chars=200) as box:
        (result,) = box.run(call("long_text", {"n": 5000}))
    assert len(result.content) == 200
    assert "[4800 characters cut]" in result.content
    assert result.content.startswith("abab") and result.content.endswith("abab")


# ---------------------------------------------------------------------------------------------------
# python sandbox
# ---------------------------------------------------------------------------------------------------


def test_python_computes_and_prints() -> None:
    assert TOOLS["python"]("print(2**100)") == "1267650600228229401496703205376\n"
    assert TOOLS["python"]("open('a.txt', 'w').write('kept'); print(open('a.txt').read())") == "kept\n"


def test_python_cannot_write_or_read_outside_its_scratch(tmp_path: Path) -> None:
    target = tmp_path / "x"
    with pytest.raises(ToolFailed, match=re.escape(f"PermissionError: sandbox: writing '{target}' is not allowed")):
        TOOLS["python"](f"open({str(target)!r}, 'w')")
    assert not target.exists()
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    with pytest.raises(ToolFailed, match=r"sandbox: reading .* is not allowed") as e:
        TOOLS["python"](f"print(open({str(secret)!r}).read())")
    assert "s3cret" not in str(e.value)
    with pytest.raises(ToolFailed, match=r"sandbox: os.symlink"):
        TOOLS["python"](f"import os; os.symlink({str(secret)!r}, 'link')")


def test_python_has_no_network_and_no_processes() -> None:
    with pytest.raises(ToolFailed, match=r"sandbox: socket.__new__ is not allowed"):
        TOOLS["python"]("import socket; socket.socket()")
    with pytest.raises(ToolFailed, match=r"sandbox: subprocess.Popen is not allowed"):
        TOOLS["python"]("import subprocess; subprocess.run(['true'])")
    with pytest.raises(ToolFailed, match=r"sandbox: os.system is not allowed"):
        TOOLS["python"]("import os; os.system('true')")


def test_python_network_namespace_where_the_machine_allows_it() -> None:
    from gpgrl.tools.sandbox import _network_isolation

    if not _network_isolation():
        pytest.skip("unprivileged user namespaces are not available here (the audit hook alone refuses sockets)")
    # inside the namespace only a loopback device exists: the interface list names no other device
    assert TOOLS["python"]("import socket; print([n for _, n in socket.if_nameindex()])") == "['lo']\n"


def test_python_memory_bomb_ends_with_memory_error() -> None:
    start = time.monotonic()
    with pytest.raises(ToolFailed) as e:
        python_tool(timeout=30, memory_mb=256)("x = bytearray(2**31)")
    assert time.monotonic() - start < 25  # an error, not a hang up to the limit
    assert str(e.value).splitlines()[-2:] == ["MemoryError", "[exit status 1]"]


def test_python_infinite_loop_is_killed_and_reported_as_timeout() -> None:
    start = time.monotonic()
    with Toolbox(["python"], timeout=1) as box:
        (result,) = box.run(call("python", {"code": "print('started', flush=True)\nwhile True: pass"}))
    assert time.monotonic() - start < 15
    assert result.error == "timeout"
    assert result.content == "error: python ran past its 1 s limit and was stopped; its output so far:\nstarted\n"


def test_python_scratch_directory_is_deleted_afterwards() -> None:
    out = TOOLS["python"]("import os; open('f.txt', 'w').write('x'); os.mkdir('d'); print(os.getcwd())")
    scratch = Path(out.strip())
    assert scratch.name.startswith("gpgrl-python-")
    assert not scratch.exists()


def test_python_errors_show_the_traceback_without_the_sandbox_frames() -> None:
    with Toolbox(["python"], timeout=10) as box:
        (result,) = box.run(call("python", {"code": "print('a')\nx = 1\nx / 0"}))
    assert result.error == "exception"
    assert result.content.startswith("a\nTraceback (most recent call last):\n  File \"<code>\", line 3, in "
                                     "<module>\n    x / 0\n")
    assert result.content.endswith("\nZeroDivisionError: division by zero\n[exit status 1]")
    assert "<string>" not in result.content  # no frame of the sandbox's own bootstrap


def test_tool_timeout_raised_by_a_tool_is_a_timeout() -> None:
    def slow_service(query: str) -> str:
        """Ask a slow service.

        Args:
            query: the question
        """
        raise ToolTimeout("ran past the service's own 3 s limit")

    box = Toolbox([slow_service])
    assert box.run(call("slow_service", {"query": "q"})) == [
        ToolResult("slow_service", "error: slow_service ran past the service's own 3 s limit", "timeout")]


def test_user_tool_in_a_module_file_can_also_be_written_by_a_recipe(tmp_path: Path) -> None:
    """A file beside the recipe, given relative to the folder the run starts in."""
    (tmp_path / "mytools.py").write_text(textwrap.dedent('''
        def double(x: int) -> int:
            """Double a number.

            Args:
                x: the number
            """
            return 2 * x
    '''))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with Toolbox(["mytools.py:double", "calculator"]) as box:
            assert box.run(call("double", {"x": 21})) == [ToolResult("double", "42")]
    finally:
        os.chdir(cwd)


def test_python_process_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A trainer killed mid-call leaves no sandboxed code running (PR_SET_PDEATHSIG)."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux /proc")
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent('''
        import os, threading, time
        from gpgrl.tools import python_tool

        threading.Thread(target=python_tool(timeout=300), args=("import time; time.sleep(300)",), daemon=True).start()
        children = []
        for _ in range(200):  # up to 20 s for the sandbox to start
            time.sleep(0.1)
            for stat in os.listdir("/proc"):
                if stat.isdigit():
                    try:
                        fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    if int(fields[1]) == os.getpid():
                        children.append(int(stat))
            if children:
                break
        time.sleep(1)  # past the bootstrap's check of its parent
        print(*children, flush=True)
        os._exit(0)  # dies without cleaning up, like a killed trainer
    '''))
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    pids = [int(p) for p in out.stdout.split()]
    assert pids, out.stderr
    deadline = time.monotonic() + 15
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(p) for p in pids)


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for a parent that no longer reaps it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_calculator_runs_in_the_calling_process():
    """A bounded built-in needs no worker: a turn of many calculator calls starts no process."""
    with Toolbox(["calculator"]) as box:
        results = box.run_many(['<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'] * 8)
        assert [r[0].content for r in results] == ["42"] * 8 and box._processes == []

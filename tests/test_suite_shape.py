"""The fast suite stays fast: a test that starts a process is marked slow, or listed here.

``pytest -m "not slow"`` is the suite a developer runs often (about two minutes on 2 CPU
cores). Starting a Python interpreter and importing the package takes seconds there, so every
test that starts a process (``subprocess.run``/``Popen``/``check_output``, or the shared
``run_cli``), directly, through a helper of its module or through a fixture of its module,
carries ``pytest.mark.slow`` (on itself, in a parametrisation, or in the module's
``pytestmark``), unless :data:`FAST_EXCEPTIONS` names it with the reason it stays fast.

The check reads the source (no process is started, nothing is timed).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: ``path::test`` -> why it stays in the fast suite although it starts a process.
FAST_EXCEPTIONS: dict[str, str] = {
    "test_cli.py::test_help_lists_every_stage": (
        "the one run of the installed command as a user starts it (python -m hardnet_export "
        "--help): under a second, and the only fast test of the entry point and its imports"
    ),
    "test_import.py::test_package_import_does_not_load_torch": (
        "importing the package and its CLI must not load torch, which only a fresh "
        "interpreter shows; under a second"
    ),
    "test_io.py::test_scratch_folders_of_killed_processes_are_removed": (
        "starts `python -c pass` only to get the id of a process that has ended"
    ),
}

#: What starts a process: ``subprocess``'s functions and the shared ``run_cli``.
SPAWNERS = {"run", "Popen", "check_output", "check_call", "call"}


def _spawn_calls(tree: ast.Module) -> set[str]:
    """The bare names that start a process in this module: ``run_cli`` and whatever it
    imports from ``subprocess`` (``from subprocess import Popen``)."""
    names = {"run_cli"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "subprocess":
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def _called_names(node: ast.AST, spawn_calls: set[str]) -> set[str]:
    """What ``node`` calls, of interest here: ``"<spawn>"`` for a call that starts a process
    (``subprocess.run(...)``, ``run_cli(...)``), else the bare names it calls (``helper()``)."""
    names = set()
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        if isinstance(func, ast.Name):
            names.add("<spawn>" if func.id in spawn_calls else func.id)
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "subprocess"
            and func.attr in SPAWNERS
        ):
            names.add("<spawn>")
    return names


def _arguments(function: ast.FunctionDef) -> set[str]:
    return {a.arg for a in function.args.args + function.args.kwonlyargs}


def _marked_slow(node: ast.AST) -> bool:
    return any(isinstance(attr, ast.Attribute) and attr.attr == "slow" for attr in ast.walk(node))


def _unmarked_spawning_tests(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    module_slow = any(
        isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and _marked_slow(n.value)
        for n in tree.body
    )
    if module_slow:
        return []
    # Functions of this module (helpers, fixtures, tests) that start a process, directly, by
    # calling one that does, or by taking one as a fixture argument: to a fixed point.
    spawn_calls = _spawn_calls(tree)
    spawning: set[str] = set()
    changed = True
    while changed:
        changed = False
        for function in functions:
            if function.name in spawning:
                continue
            uses = _called_names(function, spawn_calls) | _arguments(function)
            if uses & ({"<spawn>"} | spawning):
                spawning.add(function.name)
                changed = True
    return [
        function.name
        for function in functions
        if function.name.startswith("test_")
        and function.name in spawning
        and not any(_marked_slow(d) for d in function.decorator_list)
    ]


def test_tests_that_start_a_process_are_marked_slow() -> None:
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        relative = path.relative_to(TESTS).as_posix()
        for name in _unmarked_spawning_tests(path):
            if f"{relative}::{name}" not in FAST_EXCEPTIONS:
                unmarked.append(f"tests/{relative}::{name}")
    assert not unmarked, (
        "these tests start a process but are not marked slow; mark them "
        "@pytest.mark.slow, or list them in FAST_EXCEPTIONS with the reason they stay fast:\n"
        + "\n".join(unmarked)
    )


def test_fast_exceptions_name_existing_tests() -> None:
    for key, reason in FAST_EXCEPTIONS.items():
        relative, name = key.split("::")
        source = (TESTS / relative).read_text()
        assert f"def {name}(" in source, f"{key} is listed but does not exist"
        assert reason.strip(), f"{key} needs a reason"

"""The package layout: each package imports only the packages below it, no module imports
another that imports it back (including imports inside functions), every module imports on its
own, and modules and command or streaming functions stay short enough to read."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "tmcli"
# a package may import its own modules and those of the packages on lower levels
LEVELS = {
    "core": 0,
    "speech": 1,
    "face": 1,
    "motion": 2,
    "video": 2,
    "stream": 3,
    "train": 4,
    "tools": 4,
    "spaces": 5,
    "cli": 6,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # in cli/ and stream/, signature and docstring included
SHORT_PACKAGES = ("cli", "stream")


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    """tm modules the module `name` with this source imports, anywhere in it (top level, inside
    functions, under TYPE_CHECKING)."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                node.module
                if not node.level
                else ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".")
            )
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target not in (name, "tmcli"):
                found.add(target)
    return found


def level(name: str) -> tuple[str, int]:
    package = name.split(".")[1] if name.count(".") else "cli"
    package = "cli" if package == "__main__" else package  # `python -m tmcli` starts the CLI
    return package, LEVELS[package]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a package on the same or a higher level than the importer's."""
    wrong = []
    for name, targets in graph.items():
        package, own = level(name)
        wrong += [f"{name} -> {t}" for t in sorted(targets) if level(t)[0] != package and level(t)[1] >= own]
    return wrong


def cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                found.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


GRAPH = {
    name: imports_in(path.read_text(), name, path.name == "__init__.py") for name, path in MODULES.items()
}


def test_every_module_is_in_a_package_of_the_layering():
    loose = [n for n in MODULES if n not in ("tmcli", "tmcli.__main__") and n.split(".")[1] not in LEVELS]
    assert loose == []


def test_packages_import_only_packages_below_them():
    assert violations(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_checks_catch_an_import_inside_a_function_and_a_cycle():
    source = "def f():\n    from ..cli.options import Seed\n    return Seed\n"
    graph = {"tmcli.stream.batch": imports_in(source, "tmcli.stream.batch")}
    assert graph == {"tmcli.stream.batch": {"tmcli.cli.options"}}
    assert violations(graph) == ["tmcli.stream.batch -> tmcli.cli.options"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]


def test_each_module_imports_on_its_own():
    """Every tm module imported with no other tm module loaded before it (third-party libraries
    stay loaded, so this takes seconds): an import that only works in some order fails here."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'tmcli' or m.startswith('tmcli.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_short(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_MODULE_LINES


def test_command_and_streaming_functions_are_short():
    long = []
    for name, path in MODULES.items():
        if level(name)[0] not in SHORT_PACKAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - first + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {node.end_lineno - first + 1} lines")
    assert long == []

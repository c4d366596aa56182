"""Imports flow one way: cli -> views -> io -> engine. The numeric core never imports the CLI libraries, so
it stays usable (and fast) as a library, and io and engine never reach up into the views or the CLI."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import cnncli

PACKAGE = Path(cnncli.__file__).parent
CORE = ("engine", "io")  # below the views: no views, no cli, no rich, typer or click
LAYERS = CORE + ("views",)
UI_LIBRARIES = ("rich", "typer", "click")


def _modules(room: str) -> list[str]:
    path = PACKAGE / room
    names = [f"cnncli.{room}"]
    for info in pkgutil.walk_packages([str(path)], prefix=f"cnncli.{room}."):
        names.append(info.name)
    return sorted(names)


def _loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter holds after importing ``module``."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout)


def _forbidden(room: str) -> tuple[str, ...]:
    above = ("cnncli.cli", "cnncli.run", "cnncli.stage", "cnncli.api")  # the entry points that drive the rooms
    rooms = above if room == "views" else above + ("cnncli.views",)
    return rooms + (() if room == "views" else UI_LIBRARIES)


@pytest.mark.parametrize("module", [name for room in LAYERS for name in _modules(room)])
def test_importing_a_module_loads_nothing_above_it(module):
    """In a fresh interpreter, engine and io modules load no views, cli, rich, typer or click; views load no cli."""
    room = module.split(".")[1]
    loaded = _loaded_by(module)
    wrong = [name for name in loaded if any(name == top or name.startswith(top + ".") for top in _forbidden(room))]
    assert wrong == [], f"{module} loads {wrong}"


@pytest.mark.parametrize("room", LAYERS)
def test_no_module_imports_upward_even_inside_a_function(room):
    """Read every import statement, lazy ones too: engine and io never name views, cli or a UI library;
    views never name cli."""
    forbidden = _forbidden(room)
    found = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        parts = ("cnncli",) + path.relative_to(PACKAGE).with_suffix("").parts
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - node.level + 1]
                    target = ".".join(base + ((node.module,) if node.module else ()))
                    targets = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
                else:
                    targets = [node.module]
            else:
                continue
            for target in targets:
                if any(target == top or target.startswith(top + ".") for top in forbidden):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {target}")
    assert found == []


def test_core_modules_do_not_import_typer_or_rich():
    """Importing ops, graph, kernels, images, saving, trace, run, stage and api leaves typer and rich unloaded."""
    code = ("import sys; import cnncli.engine.ops, cnncli.engine.graph, cnncli.io.kernels, cnncli.io.images, cnncli.io.saving, "
            "cnncli.io.trace, cnncli.run, cnncli.stage, cnncli.api; print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_run_and_stage_load_no_numpy():
    """cnncli.run and cnncli.stage (which the CLI imports to start) leave NumPy and Pillow for the run itself."""
    code = ("import sys; import cnncli.run, cnncli.stage; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL', 'typer', 'rich'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_only_cli_turns_params_into_flags():
    """The core names an option by its Python name; cli.options.flag gives its flag."""
    from cnncli.cli.options import flag

    assert [flag(p) for p in ("top", "negative_slope", "kernels", "IMAGES", "--workers")] == \
        ["--top", "--negative-slope", "--kernel", "IMAGES", "--workers"]

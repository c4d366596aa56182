"""The numeric core never imports the CLI libraries, so it stays usable (and fast) as a library."""

import subprocess
import sys


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

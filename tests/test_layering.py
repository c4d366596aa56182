"""The numeric core never imports the CLI libraries, so it stays usable (and fast) as a library."""

import subprocess
import sys


def test_core_modules_do_not_import_typer_or_rich():
    """Importing ops, model, kernels, images, files and trace leaves typer and rich unloaded."""
    code = ("import sys; import cnncli.engine.ops, cnncli.engine.graph, cnncli.io.kernels, cnncli.io.images, cnncli.io.saving, "
            "cnncli.io.trace; print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

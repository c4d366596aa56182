"""`cnn kernels`: the built-in kernel library, shown, as JSON, or exported as kernel files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from . import app
from .helptext import PanelledCommand
from .output import print_json, stdout_console, tell


@app.command(cls=PanelledCommand)
def kernels(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Kernels to show: built-in names, kernel files, or families with arguments (gaussian:sigma=2, "
             "gabor:theta=30, sobel:angles=0,45,90,135); all built-in ones if none.",
        metavar="[NAME]...", show_default=False)] = None,
    format: Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")] = "table",
    export: Annotated[Optional[str], typer.Option(
        metavar="DIR", show_default=False,
        help="Write each kernel to DIR/NAME.json, in the kernel file format.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --export replace kernel files already in DIR.")] = False,
) -> None:
    """List the built-in kernels with their weights (cross-correlation: applied as written, not flipped)."""
    from ..views import tables as render
    from ..io.saving import save_json
    from ..io.kernels import LIBRARY, resolve_kernel

    chosen = [resolve_kernel(name, "") for name in names] if names else list(LIBRARY.values())
    if force and export is None:
        raise typer.BadParameter("replaces files that --export writes; give --export DIR", param_hint="--force")
    if export is not None:
        folder = Path(export)
        folder.mkdir(parents=True, exist_ok=True)
        for kernel in chosen:
            save_json(folder / f"{kernel.name}.json", kernel.to_json(), force)
        tell(f"wrote {len(chosen)} kernel file{'' if len(chosen) == 1 else 's'} to {folder}")
        return
    if format == "json":
        print_json([kernel.to_json() for kernel in chosen])
    else:
        console = stdout_console()
        title = None if not names else "Kernels (use each as --kernel NAME)"
        console.print(render.kernels_table(chosen, console.color_system is not None, title))

"""Rich renderables for whole models: the header of a run, the prediction chart, `cnn summary`
and `cnn models`. Never prints, never exits."""

from __future__ import annotations

import math
from typing import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..display import shown
from .pictures import shape_text
from ..io.limits import format_bytes
from ..io.modelfile import Model
from ..engine.predictions import Prediction

BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉"  # partial blocks, so a bar shows a share to 1/8 of a cell


def model_header(model: Model) -> Text:
    where = "bundled" if model.source == model.name else shown(model.source)
    text = Text.assemble(("Model ", "bold"), (model.name, "bold"), f" ({where}): ")
    text.append(f"input {model.input.describe()}; {len(model.network.layers)} layers; {model.params:,} parameters")
    if model.labels:
        text.append(f"; {len(model.labels)} classes")
    return text


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar ``share`` (0..1) of ``width`` cells long, in eighths of a cell."""
    eighths = round(min(max(share, 0.0), 1.0) * width * 8) if math.isfinite(share) else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


def prediction_view(predictions: Sequence[Prediction], color: bool = True) -> RenderableType:
    """'Prediction: 7 (98.9%)' and a bar per class, the most probable first."""
    best = predictions[0]
    title = Text.assemble(("Prediction: ", "bold"), (best.label, "bold green" if color else "bold"),
                          f" ({percent(best.probability)})")
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0))
    table.add_column("label", justify="right", style="bold")
    table.add_column("bar", no_wrap=True)
    table.add_column("probability", justify="right")
    for p in predictions:
        table.add_row(p.label, Text(bar(p.probability), style=("green" if p.rank == 1 else "cyan") if color else ""),
                      percent(p.probability))
    return Group(title, table)


def percent(probability: float) -> str:
    if not math.isfinite(probability):
        return "nan"
    if 0 < probability < 0.0005:
        return "<0.1%"
    if 0.9995 <= probability < 1:
        return ">99.9%"  # not 100.0%: the model is not certain
    return f"{probability:.1%}"


SUMMARY_COLUMNS = ("#", "layer", "type", "settings", "output", "params", "mult-adds")


# Below this width a graph's table (one column more than a chain's) leaves out the per-layer
# multiply-adds, whose total is still printed, rather than be cut off at the right edge.
GRAPH_TABLE_WIDTH = 100


def model_summary(model: Model, rows: list[dict], input_shape: tuple[int, ...], itemsize: int = 4,
                  width: int | None = None) -> RenderableType:
    """A per-layer table (as torchinfo or Keras' summary) with totals and the memory of one image.

    A network that is not a chain gets a "reads" column (what each layer reads); a layer whose
    value is an output besides the last layer's (the model's ``outputs``) is marked with *.
    """
    network = model.network
    extra = set(network.outputs) - {rows[-1]["name"]} if rows else set()
    columns: tuple[str, ...] = SUMMARY_COLUMNS if network.is_chain else (*SUMMARY_COLUMNS[:3], "reads",
                                                                          *SUMMARY_COLUMNS[3:])
    narrow = not network.is_chain and width is not None and width < GRAPH_TABLE_WIDTH
    if narrow:
        columns = columns[:-1]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, show_footer=True)
    total_params = sum(row["params"] for row in rows)
    total_macs = sum(row["macs"] for row in rows)
    footers = {"layer": "total", "params": f"{total_params:,}", "mult-adds": f"{total_macs:,}"}
    wrapped = ("settings", "reads") if network.is_chain else ("layer", "settings", "reads")
    for name in columns:
        left = name in ("layer", "type", "reads", "settings", "output")
        # On a narrow terminal the wrapped columns give way, but never down to nothing: a graph's
        # "reads" is what shows it is a graph.
        table.add_column(name, footer=footers.get(name, ""), justify="left" if left else "right",
                         no_wrap=name not in wrapped, overflow="fold", min_width=10 if name in wrapped else None)
    cells = [{"#": "0", "layer": "input", "type": "input", "reads": "", "settings": model.input.describe(),
              "output": shape_text(input_shape), "params": "0", "mult-adds": "0"}]
    for index, row in enumerate(rows, start=1):
        cells.append({"#": str(index), "layer": row["name"] + (" *" if row["name"] in extra else ""),
                      "type": row["type"], "reads": ", ".join(row["inputs"]), "settings": row["describe"],
                      "output": shape_text(row["shape"]), "params": f"{row['params']:,}",
                      "mult-adds": f"{row['macs']:,}"})
    for cell in cells:
        table.add_row(*(cell[name] for name in columns))
    activations = (math.prod(input_shape) + sum(math.prod(row["shape"]) for row in rows)) * itemsize
    lines = [
        f"parameters: {total_params:,} ({format_bytes(total_params * itemsize)} in float32)",
        f"multiply-adds per image: {total_macs:,}" + (" (per layer: a wider terminal, or -f json)" if narrow else ""),
        f"activations of one image, every layer kept (as cnn run does): {format_bytes(activations)}",
    ]
    if extra:
        marked = ", ".join(name for name in network.outputs if name in extra)
        lines.append(f"* an output besides the last layer: {marked}")
    if model.labels:
        shown = ", ".join(model.labels[:12]) + (f", … ({len(model.labels)} in all)" if len(model.labels) > 12 else "")
        lines.append(f"classes: {shown}")
    return Group(model_header(model), table, Text("\n".join(lines)))


def models_table(models: Sequence[Model]) -> Table:
    table = Table(title="Bundled models (use by name: --model NAME)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("input", no_wrap=True)
    table.add_column("classes", justify="right")
    table.add_column("params", justify="right")
    table.add_column("description", ratio=1)
    for model in models:
        accuracy = model.metadata.get("held_out_accuracy")
        about = model.description
        if isinstance(accuracy, (int, float)):
            about += f" Held-out accuracy {accuracy:.1%}."
        table.add_row(model.name, model.input.describe(), str(len(model.labels) or ""), f"{model.params:,}", about)
    return table

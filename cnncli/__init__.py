"""cnn: run convolutional-network layers on images with NumPy and see every intermediate map.

The Python API, loaded on first use (PEP 562), so that ``import cnncli`` costs no NumPy::

    import cnncli
    trace = cnncli.load_model("digits").run("sample_images/digit_7.png")
    trace.predictions[0].label        # '7'
    trace.maps["conv1"].shape         # (16, 8, 8): every layer's output, by name

``load_model`` and ``read_image`` read models and images; ``Model.run`` gives a ``Trace``,
``Model.predict`` a batch's outputs. Errors a caller can cause are ``CnnError`` subclasses.
The numeric core never imports Typer or Rich; the CLI lives in cnncli.cli.
"""

import importlib

__version__ = "0.2.0"

# name -> (module, attribute; None for the module itself)
_LAZY = {
    "load_model": ("cnncli.api", "load_model"),
    "read_image": ("cnncli.api", "read_image"),
    "Model": ("cnncli.api", "Model"),
    "Trace": ("cnncli.api", "Trace"),
    "Network": ("cnncli.engine.graph", "Network"),
    "Limits": ("cnncli.io.limits", "Limits"),
    "layers": ("cnncli.engine.layers", None),
    "CnnError": ("cnncli.errors", "CnnError"),
    "ImageError": ("cnncli.errors", "ImageError"),
    "SpecError": ("cnncli.errors", "SpecError"),
    "ShapeError": ("cnncli.errors", "ShapeError"),
    "GraphError": ("cnncli.errors", "GraphError"),
    "LimitError": ("cnncli.errors", "LimitError"),
    "UsageError": ("cnncli.errors", "UsageError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> object:
    """Import what a public name needs on first use, and keep it."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cnncli' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

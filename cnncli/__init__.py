"""cnn: run convolutional-network layers on images with NumPy and see every intermediate map.

The numeric core (ops, model, kernels, images, files) never imports Typer or Rich; the CLI lives
in cnncli.cli.
"""

__version__ = "0.1.0"

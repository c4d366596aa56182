"""`python -m cnncli` runs the command line."""

from .signals import console

console()

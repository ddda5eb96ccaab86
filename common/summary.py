"""`model.summary()` printed whole, whatever the terminal.

Keras draws the table with rich, which fits it to the console: to the terminal's width, or to
80 columns when the output goes to a file or a pipe, cropping columns and eliding text with
"…" (a functional model loses "Connected to", its skips and branches). Here the table gets a
fixed width that holds every column, and rich is told the console is that wide; a narrower
terminal wraps the long lines instead of losing them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import keras

from common import notebooks

SEQUENTIAL_WIDTH = 100  # Layer (type) | Output Shape | Param #
FUNCTIONAL_WIDTH = 150  # ... | Connected to


@contextmanager
def _console_width(columns: int):
    """Make rich (which reads COLUMNS) draw on a console `columns` wide."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def print_summary(model: keras.Model, *, parts: bool = False) -> None:
    """model.summary() with every column whole; with `parts`, each sub-model it contains
    (an encoder, a decoder) first."""
    if parts:
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                print_summary(layer)
    functional = not isinstance(model, keras.Sequential)
    width = FUNCTIONAL_WIDTH if functional else SEQUENTIAL_WIDTH
    with _console_width(width + 2):
        # in a notebook rich would draw an HTML table; plain text is the terminal's table
        model.summary(line_length=width, **({"print_fn": print} if notebooks.active() else {}))

"""Shared toolkit for the chapter scripts: data, CLI, training, figures, results, metrics."""

import os

# Hide TensorFlow's C++ log (CUDA probes on CPU-only machines, CPU feature notes) so a chapter's
# own output stays readable; Python errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to see it.
# Chapters import `common` before TensorFlow, so this takes effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

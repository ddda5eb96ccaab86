"""The machinery the chapters share (never a model of the course; those live in `chapters/`).

The general toolkit sits at the top (data, pipeline, cli, training, summary, figures, results,
atomic, flops, distribute); each family of machinery has a package: `vae`, `vq`, `gan`,
`diffusion`, `eval` (the judging classifier) and `classical`.
"""

import os

# Hide TensorFlow's C++ log (CUDA probes on CPU-only machines, CPU feature notes) so a chapter's
# own output stays readable; Python errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to see it.
# Chapters import `common` before TensorFlow, so this takes effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

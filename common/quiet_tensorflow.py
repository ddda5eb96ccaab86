"""Import TensorFlow without its native start-up chatter.

TensorFlow's C++ runtime writes lines such as "Could not find cuda drivers" and CPU feature
notes straight to file descriptor 2 while it loads, before `TF_CPP_MIN_LOG_LEVEL` applies. A
chapter's stderr should hold only what matters (an `error: ...` line for a user mistake), so
the TF chapters import this module first: it points fd 2 at /dev/null for the duration of the
import only. Python exceptions are unaffected (they are raised after stderr is restored).
It also raises TensorFlow's Python logger to ERROR, which hides the "triggered tf.function
retracing" advice that `predict` prints when a chapter scores several models in turn.
Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
"""

import os
import sys

if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "0" and "tensorflow" not in sys.modules:
    sys.stderr.flush()
    _saved = os.dup(2)
    _devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(_devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_devnull)

if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "0":
    import tensorflow as _tf

    _tf.get_logger().setLevel("ERROR")

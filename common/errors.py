"""The one exception type that means "the user can fix this".

Chapter scripts raise `UserError` for bad flag values, missing or corrupt data, an unwritable
output directory or a diverged (NaN) training run. `common.cli.run_main` turns it into a single
`error: ...` line on stderr and exit status 2, instead of a traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""


class DataError(UserError):
    """A dataset is unknown, missing, corrupt or cannot be downloaded."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite during training."""


def first_line(err: Exception) -> str:
    """'TypeName: the first line of its message' (cut to 120 characters), for a one-line error
    that names what went wrong underneath."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:120]}" if lines else type(err).__name__

"""The one exception type that means "the user can fix this".

Chapter scripts raise `UserError` for bad flag values, missing or corrupt data, an unwritable
output directory or a diverged (NaN) training run. `common.cli.run` turns it into a single
`error: ...` line on stderr and exit status 2, instead of a traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""


class DataError(UserError):
    """A dataset is unknown, missing, corrupt or cannot be downloaded."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite during training."""

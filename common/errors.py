"""The one family of errors a user can fix: the CLI prints its message as one line and exits 2.

Anything that is not a :class:`UserError` is a bug of ours and keeps its traceback. The
subclasses say which input was wrong; the message always names the file, flag or key and
what to do about it::

    UserError
      ConfigError    a sweep file, a config key or a command-line flag
      CorpusError    a corpus or a text: missing, empty, nothing left after cleaning
      RunFolderError a run folder or an export folder: missing, not ours, incomplete

``UserError`` subclasses ``ValueError`` so that code which validates input the Python way
(``except ValueError``) still catches it.

Example:
    >>> raise ConfigError("sweeps/x.yaml: budget.max_epochs: 0 must be >= 1")
    Traceback (most recent call last):
    ...
    lstm_sweep.errors.ConfigError: sweeps/x.yaml: budget.max_epochs: 0 must be >= 1
"""


class UserError(ValueError):
    """Bad input the user must fix; the message names it and says what to do."""


class ConfigError(UserError):
    """A sweep configuration or a command-line flag; the message names the file, key or flag."""


class CorpusError(UserError):
    """A corpus or a text that cannot be used; the message names the file and what to do."""


class RunFolderError(UserError):
    """A run folder or an export folder that is missing, incomplete or not what the command needs."""

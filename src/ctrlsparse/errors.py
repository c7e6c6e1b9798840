"""The library's errors of bad input: each names the offending key or value and says what to do (one line)."""

from __future__ import annotations


class HParamError(ValueError):
    """A bad hyperparameter value. ``key`` is the field name; the message says what to do."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def __reduce__(self):  # pickled as its two arguments (a worker process's error reaches its parent whole)
        return type(self), (self.key, self.message)


class UnknownNameError(ValueError):
    """A name that is not in a registry; the message names the axis, the value and the valid choices."""

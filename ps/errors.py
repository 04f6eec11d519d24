"""Domain errors. Only ps/api maps them to gRPC codes and only ps/cli to exit codes."""

from __future__ import annotations


class PSError(Exception):
    """Base class of every error this project raises on purpose."""


class SpecError(PSError, ValueError):
    """A job-spec value (or an optimizer hyperparameter) is invalid.

    Attributes:
        path: dotted location of the offending key, e.g. ``optimizer.betas``.
        message: what is wrong, including the value and the allowed range or choices.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self):  # crosses process boundaries (Ray tasks and actors) intact
        return (type(self), (self.path, self.message), self.__dict__)


def clip(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for echoing user input in messages.

    An error must reach the client with its intended status even when the input was huge (a
    1 MB string, a 300k-element list): gRPC refuses status details beyond its metadata limit.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"

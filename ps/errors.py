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


class SpecProblems:
    """The problems of one spec section, collected so that all are reported at once: the
    first is raised, with the others in its ``others`` (``path: message`` lines)."""

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    def add(self, error: SpecError) -> None:
        self.errors.append(error)

    def attempt(self, call, *args):
        """``call(*args)``, or None with its :class:`SpecError` collected."""
        try:
            return call(*args)
        except SpecError as exc:
            self.add(exc)
            return None

    def raise_any(self) -> None:
        if not self.errors:
            return
        first, rest = self.errors[0], self.errors[1:]
        others = list(getattr(first, "others", []))
        for exc in rest:
            others += [str(exc), *getattr(exc, "others", [])]
        first.others = others
        raise first


def did_you_mean(name: object, known) -> str:
    """`` (did you mean 'optimizer'?)`` when ``name`` is close to one of ``known``, else ''."""
    import difflib

    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def clip(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for echoing user input in messages.

    An error must reach the client with its intended status even when the input was huge (a
    1 MB string, a 300k-element list): gRPC refuses status details beyond its metadata limit.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"

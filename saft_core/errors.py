"""User-facing error types of the SAFT engine.

Each class is one kind of user error. The API maps them once to problem+json
(422 with the offending ``field``), the CLI to exit code 2 with a one-line message.
"""

from __future__ import annotations


class SaftError(ValueError):
    """Base class: a problem with what the user gave us, not a bug.

    ``field`` names the request field or CLI option at fault, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # one line, as the CLI prints it
        return self.message


class InvalidStackError(SaftError):
    """A TIFF stack we cannot use: wrong dims, dtype, non-finite values, tiny frames."""


class ShapeMismatchError(SaftError):
    """Two inputs that must line up (LR and edge map, SR grid and SMLM image) do not."""


class InvalidParameterError(SaftError):
    """A SAFT parameter outside its documented range."""


class CheckpointError(SaftError):
    """A model file that is not a loadable SR or DEN checkpoint."""


class Cancelled(Exception):
    """Raised inside a run when the caller asked to stop (cooperative cancellation)."""

"""One exception tree for eetrend.

Every error a user can cause derives from :class:`EetrendError`. Its message is a
single line that says what is wrong and how to fix it; the CLI prints exactly that
line (no traceback unless ``--debug``) and exits with :attr:`EetrendError.exit_code`.
"""

from __future__ import annotations


class EetrendError(Exception):
    """Root of every error eetrend raises on purpose."""

    exit_code: int = 1

    def __str__(self) -> str:
        # One line, whatever a file name holds: newlines and terminal control characters are shown escaped.
        text = super().__str__()
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UsageError(EetrendError):
    """Options or arguments that cannot work together (exit code 2)."""

    exit_code = 2


class InputError(EetrendError):
    """Input rasters that are missing, unreadable or inconsistent."""


class YearError(InputError):
    """Years that cannot be parsed, repeat, or are too few."""


class GridMismatchError(InputError):
    """Rasters that do not share one CRS, transform, shape and band count."""


class OutputExistsError(UsageError):
    """The output file exists and ``--overwrite`` was not given."""


class MissingExtraError(UsageError):
    """An optional dependency (an extra) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed; "
            f"install it with: pip install 'eetrend[{extra}]'"
        )


class ConfigError(UsageError):
    """A study config that is missing, unreadable or invalid (exit code 2)."""


class ConfigChangedError(UsageError):
    """The study config changed in a way that changes exported data; needs ``--force``."""


class EarthEngineError(EetrendError):
    """Earth Engine refused or failed a request in a way a retry will not fix."""


class AuthError(EetrendError):
    """Credentials that are missing, unreadable, expired or revoked."""


class WriteError(EetrendError):
    """An output that could not be written whole; nothing was left under its final name."""


class DiskFullError(WriteError):
    """No space left on the device for an output; the message gives the space free and needed."""

"""Errors the data layer raises with a message a person can act on."""


class DataError(Exception):
    """Base class for refused input or an unusable database."""


class UnknownIdError(DataError):
    """A user, item or session id that is not in the database. Nothing was written."""


class DatabaseUnavailableError(DataError):
    """The database cannot be opened or written; the message names the location and the reason."""


class DatabaseFaultError(DatabaseUnavailableError):
    """A write or read failed for a reason outside the request: the database is busy, read-only,
    full or unreachable. Nothing of the request was written; the message says why in words a
    visitor may see (no SQL, no paths), and ``reason`` names the fault for code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

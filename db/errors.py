"""Errors the data layer raises with a message a person can act on."""


class DataError(Exception):
    """Base class for refused input or an unusable database."""


class UnknownIdError(DataError):
    """A user, item or session id that is not in the database. Nothing was written."""


class DatabaseUnavailableError(DataError):
    """The database cannot be opened or written; the message names the location and the reason."""

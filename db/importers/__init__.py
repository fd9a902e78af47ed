"""Importers of public data sets into the app's tables (see docs/importing.md)."""

from db.importers.movielens import (
    FORMATS,
    DatasetExistsError,
    ImportFormatError,
    ImportReport,
    detect_format,
    import_movielens,
)

__all__ = [
    "FORMATS",
    "DatasetExistsError",
    "ImportFormatError",
    "ImportReport",
    "detect_format",
    "import_movielens",
]

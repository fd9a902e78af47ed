"""Importers of public data sets into the app's tables (see docs/importing.md)."""

from db.importers.movielens import (
    FORMATS,
    ImportFormatError,
    ImportReport,
    detect_format,
    import_movielens,
)
from db.importers.staging import (
    DatasetExistsError,
    ImportInProgressError,
    ImportTakenOverError,
    PendingImport,
    clean_abandoned_imports,
    pending_imports,
)

__all__ = [
    "FORMATS",
    "DatasetExistsError",
    "ImportFormatError",
    "ImportInProgressError",
    "ImportReport",
    "ImportTakenOverError",
    "PendingImport",
    "clean_abandoned_imports",
    "detect_format",
    "import_movielens",
    "pending_imports",
]

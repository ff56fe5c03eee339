"""Moved to :mod:`streamingt2v_core.safe_load` (the metrics read weights files too, and judge frames, not models).

Kept so that existing imports (``from .safe_pickle import ...``) keep working.
"""
from streamingt2v_core.safe_load import (  # noqa: F401
    SAFE_FORMAT_ADVICE,
    SafeLoadResult,
    UnsafeCheckpointError,
    describe_load_failure,
    load_weights_only,
    refused_globals,
)

"""Test-side names for the in-process host (implemented in scripts/comfy_host.py, shared with the demo)."""
from scripts.comfy_host import (  # noqa: F401
    WORKFLOWS_DIR,
    Host,
    PromptExecutionError,
    PromptValidationError,
    boot_host,
    host_dir,
)
from scripts.workflow_format import validate_workflow, workflow_to_api  # noqa: F401

"""A real ComfyUI host in this process: boot it with this pack, run prompts (tests and the demo).

The host (ComfyUI 0.3.75 from `scripts/setup.sh`, or the folder in $STREAMINGT2V_COMFYUI_DIR) is
imported the way its own `main.py` does it, with `--cpu` and a base directory of our own, so its
models/, input/, output/ and custom_nodes/ folders are the test's. Prompts run through the host's
real validation (`execution.validate_prompt`) and real executor (`execution.PromptExecutor`).

Workflow files are checked and converted by `scripts/workflow_format.py` from `Host.object_info()`,
the same data the web UI gets from `/object_info`.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS_DIR = REPO_ROOT / "workflows"
DEFAULT_HOST_DIR = REPO_ROOT / ".host" / "ComfyUI"
PACK_LINK_NAME = "comfyui-streamingt2v"



class PromptValidationError(AssertionError):
    """The host refused the prompt before running it."""


class PromptExecutionError(AssertionError):
    """A node raised while the host executed the prompt; the message is the host's error."""

    def __init__(self, message: str, node_id: str | None, node_type: str | None, exception_type: str | None):
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type


def host_dir() -> Path:
    return Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", DEFAULT_HOST_DIR)).resolve()


class _SilentServer:
    """The part of PromptServer the executor talks to; messages are kept for assertions."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, Any]] = []
        self.listeners: list[Callable[[str, Any], None]] = []  # e.g. the demo printing each step

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))
        for listener in self.listeners:
            listener(event, data)

    def queue_updated(self):
        pass


@dataclass
class Host:
    """The booted host. One per test process (ComfyUI keeps global state)."""

    base_dir: Path
    nodes: Any
    execution: Any
    folder_paths: Any
    server: _SilentServer
    executor: Any
    notes: list[str] = field(default_factory=list)  # one line each: what the host left out and why
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def models_dir(self) -> Path:
        return Path(self.folder_paths.models_dir)

    @property
    def output_dir(self) -> Path:
        return Path(self.folder_paths.get_output_directory())

    @property
    def input_dir(self) -> Path:
        return Path(self.folder_paths.get_input_directory())

    def node_class(self, node_type: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_type]

    def node_info(self, node_type: str) -> dict:
        """What the web UI gets for a node type from `/object_info` (same logic as the server)."""
        from comfy_api.internal import _ComfyNodeInternal

        cls = self.nodes.NODE_CLASS_MAPPINGS[node_type]
        if issubclass(cls, _ComfyNodeInternal):
            return cls.GET_NODE_INFO_V1()
        inputs = cls.INPUT_TYPES()
        return {
            "input": inputs,
            "input_order": {k: list(v.keys()) for k, v in inputs.items()},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
            "name": node_type,
            "display_name": self.nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_type, node_type),
            "category": getattr(cls, "CATEGORY", "sd"),
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        }

    def object_info(self) -> dict[str, dict]:
        return {name: self.node_info(name) for name in self.nodes.NODE_CLASS_MAPPINGS}

    def interrupt(self) -> None:
        """The host's own interrupt (what the UI's Cancel button calls)."""
        self.nodes.interrupt_processing(True)

    def run_prompt(self, prompt: dict, outputs: list[str] | None = None) -> dict[str, list]:
        """Validate and execute an API-format prompt; return each executed node's outputs.

        The result maps node id -> list of output values (one per output slot, batches unwrapped
        when the node returned a single item). Raises PromptValidationError or
        PromptExecutionError with the host's message.
        """
        with self._lock:
            return _in_worker_thread(lambda: self._run_prompt(prompt, outputs))

    def _run_prompt(self, prompt: dict, outputs: list[str] | None) -> dict[str, list]:
        prompt_id = str(uuid.uuid4())
        if outputs is None:
            valid = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
            if not valid[0]:
                raise PromptValidationError(_format_validation(valid[1], valid[3]))
            targets = list(valid[2])
        else:
            # Nodes that are not output nodes are validated (recursively, with their inputs)
            # by the same host function validate_prompt uses for output nodes.
            targets = list(outputs)
            problems = asyncio.run(self._validate_nodes(prompt_id, prompt, targets))
            if problems:
                raise PromptValidationError("\n".join(problems))
        self.server.messages.clear()
        # The executor sends per-node messages ("executing", progress) only to a client; listeners
        # (the demo's step printer) make this harness one.
        client_id = "streamingt2v-harness" if self.server.listeners else None
        self.executor.execute(prompt, prompt_id, {"client_id": client_id}, targets)
        if not self.executor.success:
            for event, data in reversed(self.executor.status_messages):
                if event == "execution_error":
                    raise PromptExecutionError(
                        f"{data['node_type']} (node {data['node_id']}): {data['exception_type']}: {data['exception_message']}",
                        data["node_id"], data["node_type"], data["exception_type"],
                    )
                if event == "execution_interrupted":
                    raise PromptExecutionError(
                        f"interrupted in {data['node_type']} (node {data['node_id']})",
                        data["node_id"], data["node_type"], "InterruptProcessingException",
                    )
            raise PromptExecutionError("execution failed without an error message", None, None, None)
        results: dict[str, list] = {}
        for node_id in prompt:
            entry = self.executor.caches.outputs.get(node_id)
            if entry is None:
                continue
            values = entry.outputs if hasattr(entry, "outputs") else entry
            results[node_id] = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
        return results

    async def _validate_nodes(self, prompt_id: str, prompt: dict, node_ids: list[str]) -> list[str]:
        validated: dict = {}
        problems: list[str] = []
        for node_id in node_ids:
            if node_id not in prompt:
                problems.append(f"node {node_id}: not in the prompt")
                continue
            ok, _reasons, _ = await self.execution.validate_inputs(prompt_id, prompt, node_id, validated)
            if ok is not True:
                for nid, (valid, reasons, _) in validated.items():
                    if valid is not True:
                        for r in reasons:
                            problems.append(f"node {nid} ({prompt[nid]['class_type']}): {r.get('message')}: {r.get('details')}")
        return sorted(set(problems))

    def ui_outputs(self) -> dict:
        """UI outputs (saved files, preview texts) of the last run, as the history API shows them."""
        return (self.executor.history_result or {}).get("outputs", {})


def _in_worker_thread(fn):
    """Run fn() in a fresh thread and return its result (re-raising its exception).

    The host runs prompts in a worker thread of its own (main.py's prompt_worker), and its
    executor calls asyncio.run(); a caller whose thread already runs an event loop (pytest with
    Playwright's sync API, a notebook) could not do that in its own thread.
    """
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="streamingt2v-host-worker")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _format_validation(error: dict, node_errors: dict) -> str:
    lines = [f"{error.get('message', 'invalid prompt')}: {error.get('details', '')}".strip()]
    for node_id, info in (node_errors or {}).items():
        for err in info.get("errors", []):
            lines.append(f"node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "\n".join(lines)


class _MissingTorchaudioFilter(logging.Filter):
    """Turns the host's import fallout of a missing torchaudio into one line.

    torchaudio has no build for the torch the set-up installs (2.14.1), and this pack uses no
    audio. Without it the host logs, while loading, "torchaudio missing" warnings, a traceback per
    audio node file and a "pip install -r requirements.txt" advice that would not help. This filter
    drops exactly those records (a traceback or failure of any other import still shows) and
    remembers which node files were left out, for one line of its own.
    """

    GENERIC_ADVICE = (
        "WARNING: some comfy_extras/ nodes did not import correctly",
        "This issue might be caused by new missing dependencies",
        "Please do a: pip install -r requirements.txt",
    )

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []
        self.other_failures = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "torchaudio missing" in message:
            return False
        if message.startswith("Traceback") and message.rstrip().endswith("No module named 'torchaudio'"):
            return False
        failed = re.match(r"Cannot import (.+) module for custom nodes: (.*)", message)
        if failed:
            if failed.group(2) == "No module named 'torchaudio'":
                self.skipped.append(os.path.basename(failed.group(1)))
                return False
            self.other_failures = True
            return True
        failed = re.match(r"IMPORT FAILED: (.+)", message)
        if failed:
            return failed.group(1).strip() not in self.skipped
        if not self.other_failures and self.skipped and (
                not message.strip() or any(message.strip().startswith(a) for a in self.GENERIC_ADVICE)):
            return False
        return True


_HOST: Host | None = None


def boot_host(base_dir: Path, models_dir: Path | None = None) -> Host:
    """Import and initialise the host in this process, with `base_dir` as its base directory.

    `models_dir` replaces `base_dir/models` (e.g. a user's folder of real weights).
    """
    global _HOST
    if _HOST is not None:
        return _HOST
    hdir = host_dir()
    if not (hdir / "main.py").is_file():
        raise RuntimeError(f"no ComfyUI host at {hdir}: run `bash scripts/setup.sh` (or set STREAMINGT2V_COMFYUI_DIR)")
    base_dir = Path(base_dir).resolve()
    for sub in ("models", "input", "output", "temp", "user", "custom_nodes"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    link = base_dir / "custom_nodes" / PACK_LINK_NAME
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)

    sys.path.insert(0, str(hdir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True
    args.base_directory = str(base_dir)
    args.disable_api_nodes = True
    args.preview_method = getattr(type(args.preview_method), "Latent2RGB", args.preview_method) if args.preview_method else args.preview_method
    import folder_paths

    # folder_paths computed its paths at import from args.base_directory; importing it after
    # setting args does that, but an earlier import (a plugin) would not: set them explicitly.
    folder_paths.set_output_directory(str(base_dir / "output"))
    folder_paths.set_input_directory(str(base_dir / "input"))
    folder_paths.set_temp_directory(str(base_dir / "temp"))
    folder_paths.set_user_directory(str(base_dir / "user"))
    models = Path(models_dir).resolve() if models_dir is not None else base_dir / "models"
    for name, (paths, exts) in list(folder_paths.folder_names_and_paths.items()):
        if name == "custom_nodes":
            folder_paths.folder_names_and_paths[name] = ([str(base_dir / "custom_nodes")], exts)
            continue
        rel = [Path(p).name for p in paths]
        folder_paths.folder_names_and_paths[name] = ([str(models / r) for r in rel], exts)
        for r in rel:
            (models / r).mkdir(parents=True, exist_ok=True)
    folder_paths.models_dir = str(models)

    audio_filter = None
    if importlib.util.find_spec("torchaudio") is None:
        audio_filter = _MissingTorchaudioFilter()
        logging.getLogger().addFilter(audio_filter)

    # Same import order as the host's main.py: its `utils` package and `server` come before
    # `nodes`, which puts comfy/ first on sys.path (where comfy/utils.py would shadow them).
    import utils.extra_config  # noqa: F401
    import execution
    import server as host_server
    import nodes

    # A real PromptServer instance (never started): nodes may reach PromptServer.instance.
    loop = asyncio.new_event_loop()
    host_server.PromptServer(loop)

    _in_worker_thread(lambda: asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False)))
    server = _SilentServer()
    executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
    _HOST = Host(base_dir=base_dir, nodes=nodes, execution=execution, folder_paths=folder_paths, server=server, executor=executor)
    if audio_filter is not None and audio_filter.skipped:
        _HOST.notes.append(
            "ComfyUI's audio nodes are not loaded: torchaudio is not installed (it has no build for this torch) "
            f"and StreamingT2V uses no audio ({', '.join(audio_filter.skipped)})")
    return _HOST



"""Fixtures of the real-browser tests: the real ComfyUI server with this pack, headless Chromium.

`comfy_server` starts the host's own `main.py` as a subprocess on a free 127.0.0.1 port, with a
base directory of its own (custom_nodes/ links this pack, models/ holds the random demo weights of
scripts/demo_weights.py, user/ a settings file that skips the first-run template browser).
`browser_page` opens the real web UI in Debian's Chromium, driven by Playwright through
`executable_path` (no browser is ever downloaded). Outside CI the tests skip when Chromium or
Playwright is missing; in CI (`CI` set) that is a failure, since `.ci/run` installs Chromium with
scripts/install_browser.sh.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scripts.demo_weights_tiny_encoders import write_hook_custom_node

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_DIR = Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", REPO_ROOT / ".host" / "ComfyUI"))
CHROMIUM = Path(os.environ.get("STREAMINGT2V_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_DIR = REPO_ROOT / "test-output" / "screenshots"
PACK_LINK_NAME = "comfyui-streamingt2v"  # also the URL prefix of our js: /extensions/<this>/
SERVER_START_TIMEOUT_S = 240
# Chromium as root in a container with no network but loopback: no sandbox, no GPU, and none of
# the background services that would try (and fail, noisily) to reach Google.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Frontend settings for a fresh user: no template browser on first start, no minimap over the
# canvas in screenshots.
UI_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Notification.ShowVersionUpdates": False,
}
# Set before the page's scripts run: the "try Nodes 2.0" banner stays closed.
INIT_SCRIPT = "try { localStorage.setItem('vueNodesBannerDismissed', 'true'); } catch (e) {}"


def _missing(reason: str) -> None:
    """Skip outside CI; in CI the browser test must run, so a missing piece is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (in CI, .ci/run installs it with scripts/install_browser.sh)")
    pytest.skip(f"{reason}: run `bash scripts/install_browser.sh` to enable the browser tests")


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"Debian's chromium is not installed at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the Python package playwright is not installed (pip install -e '.[test]')")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_demo_weights(models_dir: Path, log_path: Path) -> subprocess.Popen:
    """Start writing what the workflows load: random weights (tiny host encoders and VAE, which the server loads
    through the hook node of comfy_server, and our tiny UNets) with scripts/demo_weights*.py, and a tiny open_clip checkpoint for the CLIP score. The
    evaluation workflow's sample video is not written here: the pack writes it into the input
    folder at start-up, as it does on a user's fresh install (the browser test checks it loads).

    A subprocess, with the host's CPU mode set before any `comfy` import, so this test process
    never imports the host; it runs while the server boots (the server lists model files only
    when asked, and the page asks after both are done).
    """
    code = (
        "import sys; from pathlib import Path\n"
        f"sys.path[:0] = [{str(HOST_DIR)!r}, {str(REPO_ROOT)!r}]\n"
        "import comfy.options; comfy.options.enable_args_parsing(False)\n"
        "from comfy.cli_args import args; args.cpu = True\n"
        "from scripts.demo_weights import write_all\n"
        "from scripts.demo_weights_tiny_encoders import write_tiny_host_encoders\n"
        f"write_tiny_host_encoders(Path({str(models_dir)!r}))\n"
        f"for k, v in write_all(Path({str(models_dir)!r})).items(): print(k, v)\n"
        "from streamingt2v_core.metrics.synthetic import SAMPLE_CLIP_NAME, write_tiny_open_clip_checkpoint\n"
        f"clip = Path({str(models_dir)!r}) / 'streamingt2v_metrics' / SAMPLE_CLIP_NAME\n"
        "clip.parent.mkdir(parents=True, exist_ok=True); write_tiny_open_clip_checkpoint(clip); print(clip)\n"
    )
    log = open(log_path, "w")
    try:
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()  # the child holds its own descriptor


def _finish_demo_weights(process: subprocess.Popen, log_path: Path, timeout_s: float = 600) -> None:
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise RuntimeError(f"writing demo weights took more than {timeout_s} s")
    if code != 0:
        raise RuntimeError(f"writing demo weights failed (exit {code}):\n{log_path.read_text()[-4000:]}")


@dataclass
class ComfyServer:
    url: str
    base_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)


@pytest.fixture(scope="session")
def comfy_server(chromium_executable, tmp_path_factory) -> ComfyServer:
    if not (HOST_DIR / "main.py").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the ComfyUI host is missing at {HOST_DIR}: .ci/run must run scripts/setup.sh")
        pytest.skip(f"no ComfyUI host at {HOST_DIR}: run `bash scripts/setup.sh`")
    base = tmp_path_factory.mktemp("browser_comfy_base")
    for sub in ("models", "input", "output", "temp", "custom_nodes", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_LINK_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
    write_hook_custom_node(base / "custom_nodes")  # the server loads the tiny encoders written below
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(UI_SETTINGS))
    weights_log = base / "demo_weights.log"
    weights = _start_demo_weights(base / "models", weights_log)

    port = _free_port()
    log_path = base / "server.log"
    cmd = [
        sys.executable, str(HOST_DIR / "main.py"),
        "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--base-directory", str(base),
        "--database-url", "sqlite:///:memory:",  # keep the host folder's user/comfyui.db untouched
        "--disable-auto-launch", "--disable-api-nodes",
    ]
    log = open(log_path, "w")
    process = subprocess.Popen(cmd, cwd=HOST_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = ComfyServer(url=f"http://127.0.0.1:{port}", base_dir=base, log_path=log_path, process=process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the ComfyUI server exited with {process.returncode}:\n{server.log_tail()}")
            try:
                server.get_json("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the ComfyUI server did not answer in {SERVER_START_TIMEOUT_S} s:\n"
                                       f"{server.log_tail()}")
                time.sleep(0.5)
        _finish_demo_weights(weights, weights_log)
        yield server
    finally:
        if weights.poll() is None:
            weights.kill()
            weights.wait(timeout=20)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


@dataclass
class BrowserPage:
    """A Playwright page on the ComfyUI web UI, with the browser's console problems collected."""

    page: object
    server: ComfyServer
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    # Requests the page made that failed (no answer) or were answered >= 400: (status, method, url).
    failed_requests: list[tuple[str, str, str]] = field(default_factory=list)

    def failed_requests_to_server(self, since: int = 0) -> list[tuple[str, str, str]]:
        """Failed requests to our server after index `since`. Requests to other hosts (the
        frontend asks api.comfy.org about node packs) fail here by design: CI has no network."""
        return [r for r in self.failed_requests[since:] if r[2].startswith(self.server.url)]


@pytest.fixture(scope="session")
def browser_page(comfy_server, chromium_executable):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="streamingt2v-chromium-")  # a fresh --user-data-dir
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium_executable),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1920, "height": 1080},
            )
            try:
                context.add_init_script(INIT_SCRIPT)
                page = context.new_page()
                page.set_default_timeout(60_000)
                wrapped = BrowserPage(page=page, server=comfy_server)
                page.on("console", lambda m: wrapped.console_errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: wrapped.page_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
                page.on("requestfailed", lambda r: wrapped.failed_requests.append(("failed", r.method, r.url)))
                page.on("response", lambda r: wrapped.failed_requests.append((str(r.status), r.request.method, r.url))
                        if r.status >= 400 else None)
                page.goto(comfy_server.url + "/")
                page.wait_for_function(
                    "() => window.app?.graph && window.LiteGraph"
                    " && Object.keys(LiteGraph.registered_node_types).some(t => t.startsWith('StreamingT2V'))"
                    " && app.extensions?.some(e => e.name === 'StreamingT2V.Readouts')",
                    timeout=120_000,
                )
                yield wrapped
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR

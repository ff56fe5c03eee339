"""Resume after SIGKILL with the real server: the host's own main.py, driven over HTTP.

A server is started on a base folder of its own (models: the session's random weights), an
extension of 4 chunks is queued (`POST /prompt`), and as soon as the run store holds 2 finished
chunks the server process is killed hard (SIGKILL, in the middle of the next chunk). A fresh
server then gets the same graph: it must take the stored chunks from disk (its memory is empty)
and sample only the missing ones, and the chunks must be bit-identical to an uninterrupted run of
the same graph in another run folder (compared by the SHA-256 of their stored payloads).

Every wait is on the server's own signals (its websocket's ``executing``/``execution_*`` messages, its
``/history``) or on the run store on disk, with deadlines scaled by the machine's load per core (or
``STREAMINGT2V_TEST_TIME_SCALE``), and an HTTP request that times out under load is
retried until the deadline instead of failing the test (it once failed with a socket TimeoutError).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket
from scripts.demo_weights_tiny_encoders import write_hook_custom_node
from test_extend_nodes import extend_graph

from streamingt2v_core.runs import RunStore

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_DIR = Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", REPO_ROOT / ".host" / "ComfyUI"))
CHUNKS = 4
KILL_AFTER = 2  # stored chunks (besides chunk 0) before the kill
# A machine busy with other work (CI runners, several test sessions) gets longer deadlines: the load per core, at
# least 1, unless STREAMINGT2V_TEST_TIME_SCALE says otherwise. Deadlines only bound a hang; a healthy run ends early.
TIME_SCALE = float(os.environ.get("STREAMINGT2V_TEST_TIME_SCALE", "0") or 0) or max(
    1.0, os.getloadavg()[0] / (os.cpu_count() or 1) if hasattr(os, "getloadavg") else 1.0)
START_TIMEOUT_S = 240 * TIME_SCALE
RUN_TIMEOUT_S = 600 * TIME_SCALE
REQUEST_TIMEOUT_S = 60 * TIME_SCALE  # one HTTP request (retried until the deadline of what it waits for)
_TRANSIENT = (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout)


def server_base(tmp_path: Path, models_dir: Path) -> Path:
    """A base folder for a real server: the session's models, this pack and, as a one-file custom node, the hooks
    that load the session's tiny encoders, VAE and UMT5 (scripts/demo_weights_tiny_encoders.py)."""
    base = tmp_path / "base"
    for sub in ("input", "output", "temp", "custom_nodes", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "models").symlink_to(models_dir, target_is_directory=True)
    (base / "custom_nodes" / "comfyui-streamingt2v").symlink_to(REPO_ROOT, target_is_directory=True)
    write_hook_custom_node(base / "custom_nodes")
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path, label: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / f"server_{label}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(HOST_DIR / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(base), "--database-url", "sqlite:///:memory:", "--disable-auto-launch",
             "--disable-api-nodes"],
            cwd=HOST_DIR, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.client_id = uuid.uuid4().hex
        self.get("/system_stats", deadline=time.monotonic() + START_TIMEOUT_S)
        # The server's own progress messages: what wait() listens to.
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={self.client_id}",
                                              timeout=REQUEST_TIMEOUT_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def _request(self, request, deadline: float | None):
        """One HTTP request; a connection refused or a timeout (a busy server on a loaded machine) is retried until
        ``deadline`` (default: one request timeout from now), as long as the server process lives."""
        deadline = deadline or time.monotonic() + REQUEST_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"server exited with {self.process.returncode}:\n{self.log()}"
            try:
                with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as r:
                    return json.load(r)
            except _TRANSIENT as err:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{getattr(request, 'full_url', request)}: no answer before the deadline "
                                         f"({err}):\n{self.log()}") from err
                time.sleep(0.3)

    def get(self, path: str, deadline: float | None = None):
        return self._request(self.url + path, deadline)

    def queue(self, prompt: dict) -> str:
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        request = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        return self._request(request, None)["prompt_id"]

    def wait(self, prompt_id: str) -> dict:
        """The prompt's history entry once the server says it finished (its websocket: ``executing`` with no node,
        or ``execution_success``/``execution_error``/``execution_interrupted``); /history is the record read."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"server died:\n{self.log()}"
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"prompt {prompt_id} did not finish in {RUN_TIMEOUT_S:.0f} s:\n{self.log()}"
            self.ws.settimeout(min(remaining, 5.0))
            try:
                message = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                # No message for a while (a long chunk): the history also says when it is done (a message missed).
                if self._finished(prompt_id, deadline):
                    break
                continue
            if not isinstance(message, str):
                continue  # binary previews
            event = json.loads(message)
            data = event.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if event["type"] in ("execution_success", "execution_error", "execution_interrupted") or (
                    event["type"] == "executing" and data.get("node") is None):
                break
        entry = self._finished(prompt_id, deadline, wait_for_record=True)
        assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{self.log()}"
        return entry

    def _finished(self, prompt_id: str, deadline: float, wait_for_record: bool = False) -> dict | None:
        """The prompt's history entry when it is complete (the server writes it right after its last message)."""
        while True:
            history = self.get(f"/history/{prompt_id}", deadline)
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                return history[prompt_id]
            if not wait_for_record:
                return None
            assert time.monotonic() < deadline, f"no history of prompt {prompt_id}:\n{self.log()}"
            time.sleep(0.2)

    def stop(self, sig=signal.SIGTERM) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()


def _timeline(store: RunStore, name: str) -> list:
    try:
        return store.open(name).manifest().timeline_records()
    except Exception:  # noqa: BLE001 - not created yet
        return []


def test_resume_after_sigkill_of_the_real_server_is_bit_identical(host_weights, models_dir, tmp_path):
    if not (HOST_DIR / "main.py").is_file():
        pytest.skip(f"no ComfyUI host at {HOST_DIR}")
    base = server_base(tmp_path, models_dir)
    store = RunStore(base / "output" / "StreamingT2V" / "runs")
    name, reference_name = "killed-" + uuid.uuid4().hex[:6], "reference-" + uuid.uuid4().hex[:6]
    prompt = extend_graph(total_frames=16 + 8 * CHUNKS, seed=13, disk_cache=True, run_name=name)

    first = Server(base, "first")
    try:
        first.queue(prompt)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(_timeline(store, name)) < 1 + KILL_AFTER:
            assert time.monotonic() < deadline, f"no {KILL_AFTER} chunks stored in time:\n{first.log()}"
            assert first.process.poll() is None, first.log()
            time.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)  # hard, mid-chunk: no clean-up of any kind
        first.process.wait(timeout=30)
    finally:
        first.stop()

    run = store.open(name)
    stored = run.manifest().timeline_records()
    assert KILL_AFTER + 1 <= len(stored) < CHUNKS + 1, "the kill came too late to interrupt the run"
    for record in stored:  # what was written before the kill is whole and verifies
        run.read(record)
    first_pid = stored[1].writer.split(":")[-1]

    second = Server(base, "second")
    try:
        entry = second.wait(second.queue(prompt))
        report = entry["outputs"]["9"]["streamingt2v_run"][0]
        done = len(stored) - 1
        assert report["name"] == name
        assert report["sources"] == ["store"] * done + ["sampled"] * (CHUNKS - done), report
        resumed = run.manifest().timeline_records()
        assert len(resumed) == CHUNKS + 1
        assert [r.writer.split(":")[-1] == first_pid for r in resumed[1:]] == [True] * done + [False] * (CHUNKS - done)

        reference_prompt = extend_graph(total_frames=16 + 8 * CHUNKS, seed=13, disk_cache=True,
                                        run_name=reference_name)
        report = second.wait(second.queue(reference_prompt))["outputs"]["9"]["streamingt2v_run"][0]
        assert report["sources"] == ["sampled"] * CHUNKS
        reference = store.open(reference_name).manifest().timeline_records()
        assert [r.sha256 for r in resumed] == [r.sha256 for r in reference]
        assert [r.digest for r in resumed] == [r.digest for r in reference]

        # The route the web readout reads, on the real server.
        summary = second.get(f"/streamingt2v/runs/{name}")
        assert summary["exists"] and summary["timeline"]["files"] == [r.file for r in resumed]
        listed = {r["name"] for r in second.get("/streamingt2v/runs")["runs"]}
        assert {name, reference_name} <= listed
        assert second.get("/streamingt2v/runs/no-such-run")["exists"] is False
    finally:
        second.stop()


def test_a_request_that_times_out_under_load_is_retried_until_its_deadline(monkeypatch, tmp_path):
    # The SIGKILL test once failed with a socket TimeoutError from one /history request of a busy server.
    import io

    class Alive:
        def poll(self):
            return None

    server = Server.__new__(Server)
    server.process, server.url, server.log_path = Alive(), "http://127.0.0.1:1", tmp_path / "log"
    server.log_path.write_text("")
    answers = [TimeoutError("timed out"), socket.timeout("timed out"), urllib.error.URLError("refused")]

    def urlopen(request, timeout):
        assert timeout == REQUEST_TIMEOUT_S
        if answers:
            raise answers.pop(0)
        return io.BytesIO(b'{"ok": true}')

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    assert server.get("/history/x") == {"ok": True} and not answers
    answers[:] = [TimeoutError("timed out")] * 3
    with pytest.raises(AssertionError, match="no answer before the deadline"):
        server.get("/history/x", deadline=time.monotonic() - 1)

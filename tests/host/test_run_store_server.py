"""Resume after SIGKILL with the real server: the host's own main.py, driven over HTTP.

A server is started on a base folder of its own (models: the session's random weights), an
extension of 4 chunks is queued (`POST /prompt`), and as soon as the run store holds 2 finished
chunks the server process is killed hard (SIGKILL, in the middle of the next chunk). A fresh
server then gets the same graph: it must take the stored chunks from disk (its memory is empty)
and sample only the missing ones, and the chunks must be bit-identical to an uninterrupted run of
the same graph in another run folder (compared by the SHA-256 of their stored payloads).
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
from test_extend_nodes import extend_graph

from streamingt2v_core.runs import RunStore

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_DIR = Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", REPO_ROOT / ".host" / "ComfyUI"))
CHUNKS = 4
KILL_AFTER = 2  # stored chunks (besides chunk 0) before the kill
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600


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
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"server exited with {self.process.returncode}:\n{self.log()}"
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                assert time.monotonic() < deadline, f"server did not start in {START_TIMEOUT_S} s:\n{self.log()}"
                time.sleep(0.3)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.load(r)

    def queue(self, prompt: dict) -> str:
        body = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
        request = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)["prompt_id"]

    def wait(self, prompt_id: str) -> dict:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server died:\n{self.log()}"
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                entry = history[prompt_id]
                assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{self.log()}"
                return entry
            time.sleep(0.3)
        raise AssertionError(f"prompt {prompt_id} did not finish in {RUN_TIMEOUT_S} s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM) -> None:
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
    base = tmp_path / "base"
    for sub in ("input", "output", "temp", "custom_nodes", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "models").symlink_to(models_dir, target_is_directory=True)
    (base / "custom_nodes" / "comfyui-streamingt2v").symlink_to(REPO_ROOT, target_is_directory=True)
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

"""`ctxtag serve --workers N`'s supervisor, for real: worker processes with a socket each on one
port share the connections, a worker killed with SIGKILL is replaced, SIGTERM stops them all,
workers that cannot start end the server with a status instead of a restart loop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, closed_port


def pid_app():
    """An app factory: answers every request with its worker's pid."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def broken_app():
    raise RuntimeError("this worker cannot start")


def _supervisor(app: str, port: int, workers: int = 2) -> subprocess.Popen:
    code = ("import sys; from ctxtag.serving.workers import serve; "
            f"sys.exit(serve('tests.serving.test_workers:{app}', '127.0.0.1', {port}, {workers}))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _pids_seen(port: int, connections: int = 32, timeout_s: float = 60.0) -> set[int]:
    """The workers that answer ``connections`` fresh connections (each its own client)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            seen = set()
            for _ in range(connections):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                    seen.add(int(c.get("/").text))
            return seen
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_for(predicate, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def _both(pids: set[int]) -> set[int] | None:
    return pids if len(pids) == 2 else None


@pytest.mark.slow     # processes killed / servers waited for: the full suite's, not the fast lane's
def test_workers_share_the_port_are_replaced_when_killed_and_stop_together():
    port = closed_port()
    sup = _supervisor("pid_app", port)
    try:
        # a socket each: connections reach both workers (all 32 on one: odds 2 in 4 billion)
        pids = _wait_for(lambda: _both(_pids_seen(port)))
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        # replaced: two workers answer again, the killed one not among them
        after = _wait_for(lambda: _both(_pids_seen(port) - {victim}))
        assert max(pids) in after
        with pytest.raises(OSError, match="in use"):              # a second server may not share the port
            from ctxtag.serving.workers import serve
            serve("tests.serving.test_workers:pid_app", "127.0.0.1", port, 2)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=30) == 0
        assert "restarting" in sup.stderr.read()
        for pid in after:                                          # no worker left behind
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if sup.poll() is None:
            sup.kill()


def test_workers_that_cannot_start_end_the_server_with_a_status():
    sup = _supervisor("broken_app", closed_port())
    try:
        assert sup.wait(timeout=120) == 1
        assert "died at start-up in a row, stopping" in sup.stderr.read()
    finally:
        if sup.poll() is None:
            sup.kill()

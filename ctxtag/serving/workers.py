"""`ctxtag serve --workers N`: N uvicorn processes, each listening on its own socket of the same
port (SO_REUSEPORT), so that the kernel spreads connections over the workers.

Why not uvicorn's own ``--workers``: its workers share one listening socket, and whichever wakes
first accepts every connection that is waiting. 16 keep-alive clients connecting at once were
split 16/0, 13/3 and 10/6 over 2 workers in three runs (benchmarks/bench_api.py), and the loaded
worker's queue set the latency: /recommend at 500 req/s had p99 133 ms with 16/0 against 13 ms
with 13/3. With a socket per worker, each new connection goes to a worker chosen by the hash of its
addresses (Linux only lets sockets of the same user join a port this way).

The supervisor starts the workers (fresh interpreters: nothing of its own state is inherited),
restarts one that dies, gives up when workers keep dying at start-up, and stops them all on
SIGINT/SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import time

CRASH_WINDOW_S = 10.0        # a worker that dies this soon after its start counts as a crash at start-up
MAX_CRASHES = 5              # crashes at start-up in a row before the server gives up
STOP_GRACE_S = 10.0          # SIGTERM to SIGKILL


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that other sockets of this user may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _worker(app: str, host: str, port: int, log_level: str) -> None:
    import uvicorn

    sock = listen_socket(host, port)
    uvicorn.Server(uvicorn.Config(app, factory=True, log_level=log_level)).run(sockets=[sock])


def _in_use(host: str, port: int) -> bool:
    """Something answers on (host, port) already: a second server must not silently share it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def serve(app: str, host: str, port: int, workers: int, log_level: str = "warning") -> int:
    """Run ``app`` (an import string of an app factory) in ``workers`` processes until SIGINT or
    SIGTERM; the exit status: 0 when stopped, 1 when the workers kept dying at start-up."""
    import uvicorn

    if workers <= 1:
        uvicorn.run(app, factory=True, host=host, port=port, log_level=log_level)
        return 0
    if _in_use(host, port):
        raise OSError(f"{host}:{port} is in use")
    probe = listen_socket(host, port)                   # a port we may not bind fails here, not in N workers
    port = probe.getsockname()[1]                       # (port 0: the one the system chose, for all)
    probe.close()
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> tuple[multiprocessing.Process, float]:
        p = ctx.Process(target=_worker, args=(app, host, port, log_level), daemon=False)
        p.start()
        return p, time.monotonic()

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    crashes, status = 0, 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, (p, started) in enumerate(procs):
                if p.is_alive() or stopping:
                    continue
                early = time.monotonic() - started < CRASH_WINDOW_S
                crashes = crashes + 1 if early else 0
                gave_up = crashes >= MAX_CRASHES
                print(f"ctxtag serve: worker {p.pid} exited with {p.exitcode}{' at start-up' if early else ''}; "
                      + (f"{crashes} died at start-up in a row, stopping" if gave_up else "restarting it"),
                      file=sys.stderr, flush=True)
                if gave_up:
                    stopping, status = True, 1
                    break
                procs[i] = start()
    finally:
        for p, _ in procs:
            if p.is_alive():
                p.terminate()                           # uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_GRACE_S
        for p, _ in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status

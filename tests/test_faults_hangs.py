"""Fault suite, hangs: a --address that answers but is not Ray, SIGTERM while waiting for it.

The fake service listens on 127.0.0.1 only and stops with the test. The real ``linrep`` process is
used (the connection attempt runs in a thread that only the end of the process stops).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

from faultkit import SWEEP, assert_one_line_error, start, write_files

pytest.importorskip("ray")


@pytest.fixture
def not_ray():
    """A TCP service on 127.0.0.1 that accepts connections and answers with HTTP, not Ray."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conns.append(conn)
            try:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for c in conns:
        c.close()
    srv.close()


def _sweep(tmp_path, address: str, timeout: str) -> subprocess.Popen:
    write_files(tmp_path, {"s.toml": SWEEP})
    argv = ["sweep", "s.toml", "--out", "o", "--quiet", "--address", address]
    return start([*argv, "--connect-timeout", timeout], tmp_path)


def test_address_of_a_non_ray_service_gives_up_at_the_deadline(tmp_path, not_ray):
    proc = _sweep(tmp_path, not_ray, "3")
    try:
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_one_line_error(proc.returncode, err, not_ray, "--connect-timeout")
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


def test_sigterm_while_waiting_for_the_cluster_stops_at_once(tmp_path, not_ray):
    proc = _sweep(tmp_path, not_ray, "600")
    try:
        time.sleep(8)  # importing Ray and starting the connection attempt
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # the deadline is 600 s: only SIGTERM ends it
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM" in err.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_connect_timeout_must_be_a_positive_number(tmp_path):
    from faultkit import call

    write_files(tmp_path, {"s.toml": SWEEP})
    for bad in ("0", "-1", "nan", "inf", "soon"):
        code, _, err = call(
            ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]
            + ["--address", "127.0.0.1:1", "--connect-timeout", bad]
        )
        assert code == 2 and "--connect-timeout" in err and "Traceback" not in err


def test_sigterm_during_a_local_ray_sweep_keeps_the_finished_runs(tmp_path):
    """Ray replaces the SIGTERM handler when it starts; linrep puts its own back, so SIGTERM still
    ends the sweep like Ctrl-C: exit 143, one line naming --resume, the table of finished runs kept."""
    from faultkit import TRAIN, run

    sweep = TRAIN.replace("steps = 20", "steps = 2000") + (
        '[sweep]\nseeds = 1\ngeometry = false\n[sweep.grid]\n"model.d" = [2, 3, 4, 5]\n'
    )
    write_files(tmp_path, {"s.toml": sweep})
    proc = start(["sweep", "s.toml", "--out", "o", "--quiet", "--max-parallel", "1"], tmp_path)
    table = tmp_path / ".o.partial" / "results.csv"
    try:
        deadline = time.monotonic() + 240
        while not table.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "--resume" in last and ".o.partial" in last, err
    res = run(["sweep", "s.toml", "--out", "o", "--quiet", "--serial", "--resume"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "skipped as done" in res.stdout and (tmp_path / "o" / "results.csv").is_file()

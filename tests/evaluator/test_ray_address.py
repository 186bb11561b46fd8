"""Joining an existing Ray cluster by address (a loopback head started with `ray start`), and the
one-line errors for addresses nothing answers on."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from evomerge.errors import EvomergeError
from evomerge.evaluator.ray_connect import check_reachable

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_is_one_line_and_fast():
    port = free_port()
    start = time.monotonic()
    with pytest.raises(
        EvomergeError,
        match=rf"^cannot connect to the Ray cluster at '127.0.0.1:{port}': nothing answers "
        rf"on 127.0.0.1:{port} \(Connection refused\); start one with `ray start --head --port={port}`$",
    ):
        check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 5
    with pytest.raises(
        EvomergeError, match=r"^--address 'headnode': expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT'$"
    ):
        check_reachable("headnode")


@pytest.mark.ray
def test_run_evaluations_on_a_cluster_started_with_ray_start():
    """`ray start --head` on loopback (its own temp dir, its own process group, stopped by pid —
    never `ray stop`, which would stop every Ray on the machine), then a separate driver process
    joins it with make_backend("ray", address="127.0.0.1:PORT")."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the `ray` command is not installed next to this Python")
    env = {**os.environ, **LOOPBACK_ENV}
    port = free_port()
    # short: Ray puts Unix sockets under it, and socket paths are limited to ~107 bytes
    temp_dir = tempfile.mkdtemp(prefix="evr", dir="/tmp")
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
            "--block",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or head.poll() is not None:
                    pytest.fail("`ray start --head` did not come up")
                time.sleep(0.2)
        code = (
            "from evomerge.evaluator import make_backend, FunctionWorkerSpec, EvalRequest\n"
            f"b = make_backend('ray', FunctionWorkerSpec('evomerge.evaluator.synthetic:sphere'), address='127.0.0.1:{port}', num_cpus=0.5)\n"
            "for i in range(3):\n"
            "    b.submit(EvalRequest(i, {'genome': [0.1 * i]}))\n"
            "out = []\n"
            "while b.pending():\n"
            "    out += b.wait(timeout=60)\n"
            "print('RESULT', b.num_workers, sorted((r.candidate_id, r.status, round(r.objectives['score'], 6)) for r in out))\n"
            "b.close()\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 1 CPU on the head / 0.5 per actor = 2 actors; scores -(x - 0.3)^2
    assert "RESULT 2 [(0, 'ok', -0.09), (1, 'ok', -0.04), (2, 'ok', -0.01)]" in proc.stdout

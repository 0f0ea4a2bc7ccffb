"""adain_jax.distributed: where the three values come from, one-line errors, the start-up timeout.

The pure parts (`resolve`, `is_peer_failure`, train.main's config keys) are tested in-process. The
start itself runs in subprocesses of ``python -m train.main`` (jax.distributed can start only once
per process, before the backend): bad values, values neither given nor detected, and a coordinator
that never answers, which must end in one ``error:`` line within the stated timeout. Every
subprocess has a timeout and its process group is killed at the end, so nothing here can hang CI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from adain_jax import distributed
from helpers import ROOT
from training_helpers import subprocess_env

# Variables through which JAX detects a cluster: removed so that the tests see none.
CLUSTER_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
                     "OMPI_MCA_orte_hnp_uri", "KUBERNETES_SERVICE_HOST", "TPU_WORKER_HOSTNAMES",
                     "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_PORT",
                     distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID,
                     "JAX_COORDINATOR_BIND_ADDRESS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# resolve: explicit values, then the environment, then the cluster.
# --------------------------------------------------------------------------------------------------


def test_environment_variables_are_read_and_passed_on():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": " 3 "}
    s = distributed.resolve(environ=env)
    assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.1:1234", 4, 3)
    assert s.origins == {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
                         "process_id": "JAX_PROCESS_ID"}


def test_explicit_values_win_over_the_environment_each_separately():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    s = distributed.resolve(num_processes="8", process_id=5, environ=env,
                            names={"num_processes": "--config.num_processes"})
    assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.1:1234", 8, 5)
    assert s.origins["num_processes"] == "--config.num_processes" and s.origins["process_id"] == "process_id"
    assert s.origins["coordinator_address"] == "JAX_COORDINATOR_ADDRESS"


def test_nothing_given_is_left_to_cluster_detection():
    s = distributed.resolve(environ={"JAX_NUM_PROCESSES": "", "UNRELATED": "1"})
    assert (s.coordinator_address, s.num_processes, s.process_id) == (None, None, None)
    assert s.initialization_timeout == distributed.DEFAULT_INITIALIZATION_TIMEOUT == 300
    assert s.heartbeat_timeout == distributed.DEFAULT_HEARTBEAT_TIMEOUT
    assert "from the cluster" in s.describe()


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not a whole number"),
    ({"JAX_NUM_PROCESSES": "1.5"}, "JAX_NUM_PROCESSES='1.5' is not a whole number"),
    ({"JAX_NUM_PROCESSES": "0"}, "JAX_NUM_PROCESSES=0: the number of processes must be at least 1"),
    ({"JAX_PROCESS_ID": "-1"}, "JAX_PROCESS_ID=-1: process ids start at 0"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "JAX_PROCESS_ID=2 is out of range for JAX_NUM_PROCESSES=2: the ids are 0..1, one per process"),
    ({"JAX_COORDINATOR_ADDRESS": "localhost"}, "JAX_COORDINATOR_ADDRESS='localhost' is not HOST:PORT"),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:port"}, "JAX_COORDINATOR_ADDRESS='10.0.0.1:port' is not HOST:PORT"),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:70000"}, "the port must be between 1 and 65535"),
])
def test_bad_environment_values_are_one_line_naming_the_variable(env, message):
    with pytest.raises(distributed.DistributedSetupError) as info:
        distributed.resolve(environ=env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_addresses_accepted():
    for address in ("127.0.0.1:1", "node-0.cluster.local:65535", "[::1]:8476", "[fe80::1]:1234"):
        assert distributed.check_address(f" {address} ", "x") == address


def test_bad_timeouts_are_refused():
    with pytest.raises(distributed.DistributedSetupError,
                       match="initialization timeout=0 must be a positive number of seconds"):
        distributed.resolve(environ={}, initialization_timeout=0)
    with pytest.raises(distributed.DistributedSetupError, match="heartbeat timeout='soon' is not a whole number"):
        distributed.resolve(environ={}, heartbeat_timeout="soon")


def test_cpu_collectives_are_switched_on_unless_another_is_chosen():
    import jax

    before = jax.config.jax_cpu_collectives_implementation
    try:
        jax.config.update("jax_cpu_collectives_implementation", None)  # what an older default would be
        distributed.enable_cpu_collectives()
        assert jax.config.jax_cpu_collectives_implementation == "gloo"
        jax.config.update("jax_cpu_collectives_implementation", "mpi")  # the user's choice is kept
        distributed.enable_cpu_collectives()
        assert jax.config.jax_cpu_collectives_implementation == "mpi"
    finally:
        jax.config.update("jax_cpu_collectives_implementation", before)


# --------------------------------------------------------------------------------------------------
# train.main's config keys.
# --------------------------------------------------------------------------------------------------


def _config(**values):
    from train.configs import default

    config = default.get_config()
    config.update(values)
    return config


def test_config_keys_win_over_the_environment(monkeypatch):
    from train import main

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    s = main.distributed_settings(_config(distributed=True, num_processes=2, process_id=1, coordinator_timeout=7))
    assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.1:1234", 2, 1)
    assert s.origins["num_processes"] == "--config.num_processes"
    assert s.initialization_timeout == 7
    # The "not set" defaults defer to the environment.
    s = main.distributed_settings(_config(distributed=True))
    assert (s.num_processes, s.process_id) == (4, None)


def test_config_without_distributed_starts_nothing(monkeypatch):
    from train import main

    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")  # e.g. set by a scheduler: not used unless asked for
    assert main.distributed_settings(_config()) is None
    with pytest.raises(distributed.DistributedSetupError,
                       match=r"config.process_id is set but config.distributed is False: add "
                             r"--config.distributed=True"):
        main.distributed_settings(_config(process_id=1))


def test_bad_config_value_names_the_option():
    from train import main

    with pytest.raises(distributed.DistributedSetupError,
                       match=r"--config.process_id=3 is out of range for --config.num_processes=2"):
        main.distributed_settings(_config(distributed=True, num_processes=2, process_id=3))


# --------------------------------------------------------------------------------------------------
# What a dead peer looks like.
# --------------------------------------------------------------------------------------------------


def test_peer_failures_are_recognised():
    # Messages seen on jax 0.10.2 when the other process of a 2-process CPU run was SIGKILLed.
    seen = [ValueError("UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:547] "
                       "Connection closed by peer [127.0.0.1]:31132"),
            RuntimeError("UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):\n1"),
            RuntimeError("DEADLINE_EXCEEDED: Barrier timed out. Barrier id: sync_global_devices")]
    assert all(distributed.is_peer_failure(e) for e in seen)
    assert not distributed.is_peer_failure(ValueError("conv shapes (1, 2) and (3,) do not match"))
    line = distributed.peer_failure_message(seen[0], 0, 2)
    assert "\n" not in line and line.startswith("process 0 of 2: another process of this run stopped")
    assert "Gloo all-reduce failed" in line and "resume from the last checkpoint" in line


# --------------------------------------------------------------------------------------------------
# The start, in subprocesses of train.main.
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_file():
    return ROOT / "train" / "configs" / "tiny.py"


def clean_env(**extra) -> dict:
    env = subprocess_env()
    for name in CLUSTER_VARIABLES:
        env.pop(name, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_start(workdir, config_file, env, timeout=120, **overrides) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m train.main --config.distributed=True`` in its own process group, killed at the end."""
    args = [sys.executable, "-m", "train.main", f"--workdir={workdir}", f"--config={config_file}",
            "--config.distributed=True", "--config.vgg=/nonexistent"]
    args += [f"--config.{k}={v}" for k, v in overrides.items()]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    return subprocess.CompletedProcess(args, proc.returncode, out, err), time.monotonic() - t0


def assert_one_error_line(proc, expected_status=2) -> str:
    assert proc.returncode == expected_status, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Check failure stack trace" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-3000:]
    return last


def test_bad_environment_value_is_one_line_before_jax_starts(tmp_path, config_file):
    proc, _ = run_start(tmp_path / "w", config_file, clean_env(JAX_COORDINATOR_ADDRESS="127.0.0.1:1234",
                                                              JAX_NUM_PROCESSES="two", JAX_PROCESS_ID="0"))
    assert assert_one_error_line(proc) == "error: JAX_NUM_PROCESSES='two' is not a whole number"


def test_values_neither_given_nor_detected_are_one_line(tmp_path, config_file):
    port = free_port()
    proc, _ = run_start(tmp_path / "w", config_file, clean_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                                              JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}"))
    last = assert_one_error_line(proc)
    assert last.startswith("error: cannot start several processes: num processes, process id not given and no "
                           "cluster"), last
    assert "set JAX_NUM_PROCESSES=N, JAX_PROCESS_ID=I" in last
    assert "--config.num_processes / --config.process_id" in last


@pytest.mark.parametrize("process_id", [1, 0])
def test_coordinator_that_never_answers_fails_within_the_timeout(tmp_path, config_file, process_id):
    """Process 1 with no coordinator, or process 0 whose peer never comes: one line after the timeout."""
    timeout = 4
    port = free_port()  # nothing listens there (process 1) / process 0 binds it on loopback only
    env = clean_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",
                    JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=process_id)
    proc, elapsed = run_start(tmp_path / "w", config_file, env, coordinator_timeout=timeout)
    last = assert_one_error_line(proc)
    assert last.startswith(f"error: multi-process start timed out after {timeout} s: "), last
    if process_id:
        assert f"process 1 of 2 could not register with the coordinator at 127.0.0.1:{port}" in last
    else:
        assert f"process 0 started the coordinator at 127.0.0.1:{port} but not all 2 processes connected" in last
    assert elapsed > timeout
    print(f"process {process_id}: gave up after {elapsed:.1f} s (timeout {timeout} s + interpreter start)")


def test_coordinator_port_in_use_is_one_line(tmp_path, config_file):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        proc, _ = run_start(tmp_path / "w", config_file, clean_env(
            JAX_COORDINATOR_ADDRESS=address, JAX_COORDINATOR_BIND_ADDRESS=address, JAX_NUM_PROCESSES=1,
            JAX_PROCESS_ID=0))
    last = assert_one_error_line(proc)
    assert last.startswith("error: jax.distributed cannot start (coordinator 127.0.0.1:"), last
    assert f"is the port of {address} already in use on process 0's host?" in last

"""Multi-host training proven on one machine: 2 processes x 1 CPU device against 1 process x 2 devices.

Both are ``python -m train.main`` with the same tiny config and seed. The two processes talk over
jax.distributed on loopback (127.0.0.1, a free port; gloo CPU collectives), exactly as two hosts
would. One run covers every claim of the multi-host set-up:

* the first run gets its three values from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
  ``JAX_PROCESS_ID``; process 1 SIGKILLs itself while loading a batch after checkpoint 4, and
  process 0 must exit non-zero with a message within the heartbeat timeout;
* the restart gets them from ``--config.coordinator_address/num_processes/process_id`` and resumes
  both processes from the last complete checkpoint to the end;
* its losses equal the single-process run's: the first step to float rounding, later steps within
  the bound of Adam's sign flips that tests/test_train.py derives (here they are measured equal);
* each process read only its own slice of every global batch, and the slices together are the
  single-process batches (recorded by a wrapper around `ImageStream.sample`, test-side only);
* metrics.jsonl has each step once (only process 0 writes), and the checkpoints are one Orbax
  multi-process checkpoint per step that a single process can read.

Every subprocess runs in its own process group with a timeout and is killed in ``finally``, so a
hang can never block CI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import adain_jax
from helpers import ROOT
from adain_jax.io.weights import CHECKPOINTS
from train import metric_writer
from training_helpers import SUBPROCESS_TIMEOUT, make_image_folder, subprocess_env, write_vgg_dir

NUM_STEPS, CHECKPOINT_EVERY, BATCH = 8, 2, 2
# Process 1 dies while loading this step's batch. With prefetch=1 that read starts as step 7 begins,
# after checkpoint 6's save was started, and Orbax starts a save only once the previous one (4) is
# committed: the restart resumes from 4 or 6.
KILL_AT_STEP = 8
HEARTBEAT_TIMEOUT = 15  # s: how long JAX waits for a silent process before stopping the others

# Runs train.main after wrapping ImageStream.sample to record (stream, global sample index) per call,
# appended line by line so the record survives a SIGKILL; optionally SIGKILLs itself at one sample.
WRAPPER = textwrap.dedent("""
    import os, signal, sys, threading, time
    record = os.environ["ADAIN_TEST_RECORD"]
    kill_at = int(os.environ.get("ADAIN_TEST_SIGKILL_AT_SAMPLE", "-1"))
    from train import input_pipeline
    original = input_pipeline.ImageStream.sample
    lock = threading.Lock()

    def sample(self, k):
        if k == kill_at:
            with open(record + ".killed", "w") as f:
                f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        with lock, open(record, "a") as f:
            f.write(f"{self.stream} {k}\\n")
        return original(self, k)

    input_pipeline.ImageStream.sample = sample
    from absl import app
    from train import main
    sys.argv = ["train.main", *sys.argv[1:]]
    app.run(main.main)
""")

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("multihost")
    (base / "wrapper.py").write_text(WRAPPER)
    return {
        "base": base,
        "content": make_image_folder(base / "content", 5, seed=1),
        "style": make_image_folder(base / "style", 4, seed=2),
        "vgg": write_vgg_dir(base / "vgg"),
        "tfds_data_dir": base / "tfds",
        "cache": base / "xla_cache",
    }


def command(setup, workdir, **overrides) -> list[str]:
    values = dict(content=setup["content"], style=setup["style"], vgg=setup["vgg"],
                  tfds_data_dir=setup["tfds_data_dir"], compilation_cache_dir=setup["cache"], image_size=32,
                  crop_size=32, batch_size=BATCH, num_steps=NUM_STEPS, log_every=1, checkpoint_every=CHECKPOINT_EVERY,
                  sample_every=0, num_workers=1, prefetch=1, progress_bar=False, keep_checkpoints=10)
    values.update(overrides)
    return [sys.executable, str(setup["base"] / "wrapper.py"), f"--workdir={workdir}",
            f"--config={ROOT / 'train' / 'configs' / 'tiny.py'}", *[f"--config.{k}={v}" for k, v in values.items()]]


class Processes:
    """Several subprocesses, each in its own process group; `close` kills whatever is left."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []

    def start(self, args, env, log) -> subprocess.Popen:
        self.logs.append(open(log, "w"))
        proc = subprocess.Popen(args, cwd=ROOT, env={k: str(v) for k, v in env.items()}, stdout=subprocess.DEVNULL,
                                stderr=self.logs[-1], start_new_session=True)
        self.procs.append(proc)
        return proc

    def wait_all(self, timeout) -> dict[int, float]:
        """Wait for every process (at most ``timeout`` s in all); return each one's exit time (time.time())."""
        deadline, ended = time.monotonic() + timeout, {}
        while len(ended) < len(self.procs) and time.monotonic() < deadline:
            for i, proc in enumerate(self.procs):
                if i not in ended and proc.poll() is not None:
                    ended[i] = time.time()
            time.sleep(0.05)
        return ended

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for log in self.logs:
            log.close()


def latest_step(workdir) -> int | None:
    """The last complete checkpoint (Orbax renames a step directory to its number once committed)."""
    steps = [int(p.name) for p in (workdir / CHECKPOINTS).iterdir() if p.name.isdigit()]
    return max(steps, default=None)


def read_weights(workdir) -> dict:
    """The latest checkpoint's ``weights`` item onto this process's first device (whatever topology wrote it)."""
    import orbax.checkpoint as ocp

    from adain_jax.model import architecture

    step = latest_step(workdir)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {part: {spec.name: {"kernel": jax.ShapeDtypeStruct(spec.flax_kernel_shape, np.float32, sharding=sharding),
                                 "bias": jax.ShapeDtypeStruct((spec.out_channels,), np.float32, sharding=sharding)}
                     for spec in specs}
              for part, specs in (("encoder", architecture.ENCODER), ("decoder", architecture.DECODER))}
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(workdir / CHECKPOINTS / str(step) / "weights", target)


def records(path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line.strip()]


def two_process_commands(setup, workdir, run: str, port: int) -> list[tuple[list[str], dict]]:
    """The (args, env) of processes 0 and 1 of ``run`` ("killed" or "restarted")."""
    out = []
    for i in range(2):
        env = subprocess_env(JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",  # loopback only
                             ADAIN_TEST_RECORD=setup["base"] / f"{run}.{i}.samples")
        for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
            env.pop(name, None)
        if run == "killed":  # the three values from the environment, read by adain_jax.distributed
            env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))
            if i == 1:  # process 1 reads global sample 2 * (KILL_AT_STEP - 1) + 1 for that step
                env["ADAIN_TEST_SIGKILL_AT_SAMPLE"] = str(BATCH * (KILL_AT_STEP - 1) + 1)
            args = command(setup, workdir, distributed=True, heartbeat_timeout=HEARTBEAT_TIMEOUT)
        else:  # from the config keys
            args = command(setup, workdir, distributed=True, coordinator_address=f"127.0.0.1:{port}",
                           num_processes=2, process_id=i)
        out.append((args, env))
    return out


@pytest.fixture(scope="module")
def runs(setup):
    """1 process x 2 devices, alongside 2 processes x 1 device killed (process 1 by SIGKILL); then both
    processes restarted. The single-process run has its own tfds_data_dir, so process 0 of the
    two-process run builds the folder datasets while process 1 waits for it."""
    base = setup["base"]
    one, two = base / "one_process", base / "two_processes"
    out = {"reference": {"workdir": one}, "two_processes": {"workdir": two, "runs": []}}
    for run in ("killed", "restarted"):
        group = Processes()
        logs = [base / f"{run}.{i}.log" for i in range(2)]
        try:
            for (args, env), log in zip(two_process_commands(setup, two, run, free_port()), logs):
                group.start(args, env, log)
            if run == "killed":  # the reference shares the CPU time (compiling is mostly one thread)
                env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2",
                                     ADAIN_TEST_RECORD=base / "one_process.samples")
                for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
                    env.pop(name, None)
                group.start(command(setup, one, tfds_data_dir=base / "tfds_one"), env, base / "one_process.log")
            ended = group.wait_all(SUBPROCESS_TIMEOUT)
            assert len(ended) == len(group.procs), f"{run}: a process did not finish: {logs[0].read_text()[-2000:]}"
        finally:
            group.close()
        killed_at = base / f"{run}.1.samples.killed"
        out["two_processes"]["runs"].append({
            "status": [p.returncode for p in group.procs[:2]], "ended": ended,
            "logs": [log.read_text() for log in logs],
            "records": [records(base / f"{run}.{i}.samples") for i in range(2)],
            "killed_at": float(killed_at.read_text()) if killed_at.exists() else None,
            "latest_checkpoint": latest_step(two),
        })
        if run == "killed":
            log = (base / "one_process.log").read_text()
            assert group.procs[2].returncode == 0, log[-3000:]
            out["reference"].update(records=records(base / "one_process.samples"), log=log)
    return out


@pytest.fixture(scope="module")
def reference(runs):
    return runs["reference"]


@pytest.fixture(scope="module")
def two_processes(runs):
    return runs["two_processes"]


def test_a_killed_process_stops_the_other_with_one_line(two_processes):
    killed = two_processes["runs"][0]
    assert killed["killed_at"] is not None, killed["logs"][1][-3000:]
    assert killed["status"][1] == -signal.SIGKILL
    assert killed["status"][0] not in (0, None), killed["logs"][0][-3000:]
    waited = killed["ended"][0] - killed["killed_at"]
    last = killed["logs"][0].strip().splitlines()[-1]
    print(f"process 1 SIGKILLed while loading step {KILL_AT_STEP}'s batch: process 0 exited with status "
          f"{killed['status'][0]} {waited:.1f} s later; its last line: {last}")
    assert waited < HEARTBEAT_TIMEOUT + 30, killed["logs"][0][-3000:]
    # Waiting for process 1 in a step, process 0 fails at once and says so in one line, even with
    # checkpoint 6's commit (which needs process 1) still in flight. (Had it been busy elsewhere,
    # JAX's coordination service would have stopped it after the heartbeat timeout.)
    assert killed["status"][0] == 1, killed["logs"][0][-3000:]
    assert last.startswith("error: process 0 of 2: another process of this run stopped or became unreachable"), \
        killed["logs"][0][-3000:]
    assert waited < 10, "process 0 should stop at once, not after the heartbeat timeout"
    assert killed["latest_checkpoint"] in (4, 6)  # checkpoint 4 was complete before the kill


@pytest.mark.slow
def test_killing_the_coordinator_stops_the_other(setup, tmp_path):
    """Process 0 (it runs JAX's coordination service) SIGKILLed in step 3: process 1 stops at once."""
    port = free_port()
    group = Processes()
    try:
        for i in range(2):
            address = f"127.0.0.1:{port}"
            env = subprocess_env(JAX_COORDINATOR_ADDRESS=address, JAX_COORDINATOR_BIND_ADDRESS=address,
                                 JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i),
                                 ADAIN_TEST_RECORD=tmp_path / f"{i}.samples")
            if i == 0:
                env["ADAIN_TEST_SIGKILL_AT_SAMPLE"] = str(BATCH * 2)  # process 0's sample of step 3
            group.start(command(setup, tmp_path / "w", distributed=True, heartbeat_timeout=HEARTBEAT_TIMEOUT), env,
                        tmp_path / f"{i}.log")
        ended = group.wait_all(SUBPROCESS_TIMEOUT)
    finally:
        group.close()
    log = (tmp_path / "1.log").read_text()
    assert group.procs[0].returncode == -signal.SIGKILL, (tmp_path / "0.log").read_text()[-3000:]
    assert group.procs[1].returncode not in (0, None), log[-3000:]
    waited = ended[1] - float((tmp_path / "0.samples.killed").read_text())
    print(f"process 0 SIGKILLed in step 3: process 1 exited with status {group.procs[1].returncode} {waited:.1f} s "
          f"later; its last line: {log.strip().splitlines()[-1]}")
    assert waited < HEARTBEAT_TIMEOUT + 30
    # Our line, or JAX's own abort when its coordination-service poller notices first.
    assert ("error: process 1 of 2: another process of this run stopped or became unreachable" in log
            or "Terminating process because the JAX distributed service detected fatal errors" in log), log[-3000:]


def test_restart_of_both_resumes_from_the_last_checkpoint(two_processes):
    killed, restarted = two_processes["runs"]
    assert restarted["status"] == [0, 0], restarted["logs"][0][-3000:] + restarted["logs"][1][-3000:]
    resumed_from = killed["latest_checkpoint"]
    workdir = two_processes["workdir"]
    for log in restarted["logs"]:
        assert f"Resuming from {workdir / 'checkpoints' / str(resumed_from)} at step {resumed_from}" in log
        assert "JAX process" in log and "/2" in log
    # Both processes continued at the saved global sample position (see also the slice test).
    first = {min(k for _, k in r) for r in restarted["records"]}
    assert first == {BATCH * resumed_from, BATCH * resumed_from + 1}
    assert restarted["latest_checkpoint"] == NUM_STEPS


def test_two_processes_match_one_process_with_two_devices(two_processes, reference):
    got = metric_writer.read_metrics(two_processes["workdir"])
    expected = metric_writer.read_metrics(reference["workdir"])
    assert [r["step"] for r in got] == list(range(1, NUM_STEPS + 1))  # written once per step (process 0 only)
    assert [r["step"] for r in expected] == list(range(1, NUM_STEPS + 1))
    rel = [abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(got, expected)]
    print("per-step relative loss difference, 2 processes x 1 device vs 1 process x 2 devices:",
          " ".join(f"{r:.2e}" for r in rel))
    assert rel[0] < 1e-5  # the same batch and weights give the same loss
    assert max(rel) < 1e-4
    assert all(a["lr"] == b["lr"] for a, b in zip(got, expected))
    # Parameters: at most Adam's sign flips of rounding-level gradients, ~2 lr per step (tests/test_train.py).
    a, b = read_weights(two_processes["workdir"]), read_weights(reference["workdir"])
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])
    diff = float(np.max(np.abs(flat(a["decoder"]) - flat(b["decoder"]))))
    lr_sum = sum(r["lr"] for r in expected)
    print(f"decoder max |diff| after {NUM_STEPS} steps: {diff:.3g} (bound {2 * lr_sum:.3g})")
    assert diff <= 2 * lr_sum * 1.01
    assert np.array_equal(flat(a["encoder"]), flat(b["encoder"]))


def test_each_process_reads_only_its_slice_of_every_global_batch(two_processes, reference):
    killed, restarted = two_processes["runs"]
    single = reference["records"]
    for run in (killed, restarted):
        for process, recorded in enumerate(run["records"]):
            assert recorded, "no samples recorded"
            # Process i of 2 with a global batch of 2 reads global samples 2 * b + i, never the other's.
            assert all(k % BATCH == process for _, k in recorded), sorted(set(recorded))[:20]
            assert {s for s, _ in recorded} == {0, 1}  # content and style streams
    # Together the slices are the single-process run's batches: the same global samples.
    resumed_from = killed["latest_checkpoint"]
    union = {(s, k) for run in (killed, restarted) for r in run["records"] for (s, k) in r}
    needed = {(s, k) for (s, k) in single if k < BATCH * NUM_STEPS}
    assert needed == {(s, k) for s in (0, 1) for k in range(BATCH * NUM_STEPS)}
    assert needed <= union
    after_restart = {(s, k) for r in restarted["records"] for (s, k) in r if k < BATCH * NUM_STEPS}
    assert after_restart == {(s, k) for s in (0, 1) for k in range(BATCH * resumed_from, BATCH * NUM_STEPS)}


def test_checkpoints_are_single_multi_process_checkpoints(two_processes):
    directory = two_processes["workdir"] / CHECKPOINTS
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    assert steps == list(range(CHECKPOINT_EVERY, NUM_STEPS + 1, CHECKPOINT_EVERY))
    # One checkpoint per step for both processes (no per-process copies), readable by one process.
    assert not [p.name for p in directory.iterdir() if not p.name.isdigit()]
    last = directory / str(NUM_STEPS)
    assert json.loads((last / "meta" / "metadata").read_text())["data_position"] == BATCH * NUM_STEPS
    # Orbax's multi-process save: one array store per process (process 1 holds no replica-0 shards of
    # the replicated arrays, but takes part), one manifest and metadata for the whole checkpoint.
    assert sorted(p.name for p in (last / "weights").glob("ocdbt.process_*")) == ["ocdbt.process_0",
                                                                                 "ocdbt.process_1"]
    assert (last / "weights" / "manifest.ocdbt").is_file() and (last / "weights" / "_METADATA").is_file()
    weights = read_weights(two_processes["workdir"])  # one process with one device reads it
    assert set(weights) == {"encoder", "decoder"}
    info = json.loads((two_processes["workdir"] / "config.json").read_text())
    assert info["processes"] == 2 and info["devices"] == 2
    # TensorBoard: one event file per run (process 0's), not one per process.
    assert len(list((two_processes["workdir"] / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_stylize_can_load_a_multi_process_workdir(two_processes):
    weights = adain_jax.load_weights(two_processes["workdir"])
    assert set(weights) == {"encoder", "decoder"}

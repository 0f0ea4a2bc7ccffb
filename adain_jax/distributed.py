"""Starting JAX's multi-process runtime (`jax.distributed`) for every multi-process front end.

Training (``python -m train.main --config.distributed=True``) and dataset-scale stylization run one
process per host (or per group of devices), all executing the same program. Before anything touches
JAX's backend each process calls `initialize`, which:

* resolves the coordinator address (``HOST:PORT`` of process 0), the process count and this
  process's id, each from the first of: an explicit value (a config key or command-line option), the
  variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, or the cluster
  JAX detects (Cloud TPU, SLURM, Open MPI, Kubernetes). jax 0.10 itself reads only the first
  variable, so without this the other two were ignored and start-up failed with a traceback;
* enables cross-process collectives on the CPU (gloo), so several CPU processes can train together;
* turns every way the start can fail into a `DistributedSetupError` with one line that says what to
  fix. A coordinator that never answers (or processes that never all arrive) is reported after
  ``initialization_timeout`` seconds by a watchdog, because JAX itself aborts the process from C++
  with a stack trace in that case.

After the start, JAX's coordination service watches every process: one that dies (even by SIGKILL)
makes the others fail at their next cross-process operation, or at the latest
``heartbeat_timeout`` seconds later, when JAX aborts them with "Terminating process because the JAX
distributed service detected fatal errors". `is_peer_failure`, `peer_failure_message` and
`exit_now` let a front end turn the first case into one line and a prompt exit instead of waiting
for the shutdown barrier a dead peer can never reach.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, NoReturn

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

# JAX's own defaults (jax.distributed.initialize in jax 0.10.2).
DEFAULT_INITIALIZATION_TIMEOUT = 300  # s: every process must have registered with the coordinator by then
DEFAULT_HEARTBEAT_TIMEOUT = 100  # s: a process silent this long is declared dead and the others stop
DEFAULT_SHUTDOWN_TIMEOUT = 300  # s: how long a finishing process waits for the others at exit

# Our watchdog reports a start that takes too long; JAX's own timeout (which aborts with a stack
# trace) is set this much later so that it never fires first.
_JAX_TIMEOUT_MARGIN = 60

_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(?P<port>\d+)$")

# What JAX and gloo say when another process of the run has gone away.
_PEER_FAILURE = re.compile(
    r"gloo|connection (closed|reset|refused)|broken pipe|coordination ?service|heartbeat|"
    r"barrier|task .* (failed|error)|unavailable|deadline.?exceeded|socket closed",
    re.IGNORECASE)


class DistributedSetupError(Exception):
    """A multi-process start that cannot work, as one line naming the value or variable to fix."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What `initialize` passes to `jax.distributed.initialize`; None: left to cluster detection.

    ``origins`` says where each of the three values came from (the option name or the environment
    variable) and ``names`` how the front end's user sets each one, both for messages.
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    initialization_timeout: int = DEFAULT_INITIALIZATION_TIMEOUT
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT
    origins: Mapping[str, str] = dataclasses.field(default_factory=dict)
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        def show(key, value):
            return f"{value} (from {self.origins[key]})" if key in self.origins else "from the cluster"

        return (f"coordinator {show('coordinator_address', self.coordinator_address)}, "
                f"{show('num_processes', self.num_processes)} processes, "
                f"process id {show('process_id', self.process_id)}")


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _whole_number(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise DistributedSetupError(f"{name}={value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise DistributedSetupError(f"{name}={value!r} is not a whole number")
    return int(text)


def _timeout(value: Any, name: str) -> int:
    seconds = _whole_number(value, name)
    if seconds <= 0:
        raise DistributedSetupError(f"{name}={value!r} must be a positive number of seconds")
    return seconds


def check_address(address: str, name: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) with a port in 1..65535, else DistributedSetupError."""
    address = str(address).strip()
    match = _ADDRESS.match(address)
    if not match:
        raise DistributedSetupError(f"{name}={address!r} is not HOST:PORT (e.g. 10.0.0.1:1234, the address of "
                                    "process 0 and a free port on it)")
    if not 0 < int(match["port"]) < 65536:
        raise DistributedSetupError(f"{name}={address!r}: the port must be between 1 and 65535")
    return address


def resolve(coordinator_address: Any = None, num_processes: Any = None, process_id: Any = None, *,
            names: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None,
            initialization_timeout: Any = DEFAULT_INITIALIZATION_TIMEOUT,
            heartbeat_timeout: Any = DEFAULT_HEARTBEAT_TIMEOUT,
            shutdown_timeout: Any = DEFAULT_SHUTDOWN_TIMEOUT) -> Settings:
    """The three values from explicit arguments, else the environment, else None (cluster detection).

    Explicit values may be strings (from a command line) or ints; None or "" means "not given".
    ``names`` maps ``coordinator_address``/``num_processes``/``process_id`` to how the caller's user
    spells them (e.g. ``--config.num_processes``), for messages. Raises DistributedSetupError, one
    line, for a value that is not a number or an address, a process count below 1, or an id outside
    ``0..count-1``.
    """
    environ = os.environ if environ is None else environ
    names = dict(names or {})
    explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes,
                "process_id": process_id}
    env_names = {"coordinator_address": ENV_COORDINATOR, "num_processes": ENV_NUM_PROCESSES,
                 "process_id": ENV_PROCESS_ID}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, value in explicit.items():
        if not _is_unset(value):
            values[key], origins[key] = value, names.get(key, key)
        elif not _is_unset(environ.get(env_names[key])):
            values[key], origins[key] = environ[env_names[key]], env_names[key]

    if "coordinator_address" in values:
        values["coordinator_address"] = check_address(values["coordinator_address"], origins["coordinator_address"])
    for key in ("num_processes", "process_id"):
        if key in values:
            values[key] = _whole_number(values[key], origins[key])
    count, index = values.get("num_processes"), values.get("process_id")
    if count is not None and count < 1:
        raise DistributedSetupError(f"{origins['num_processes']}={count}: the number of processes must be at least 1")
    if index is not None and index < 0:
        raise DistributedSetupError(f"{origins['process_id']}={index}: process ids start at 0")
    if count is not None and index is not None and index >= count:
        raise DistributedSetupError(
            f"{origins['process_id']}={index} is out of range for {origins['num_processes']}={count}: "
            f"the ids are 0..{count - 1}, one per process")
    return Settings(coordinator_address=values.get("coordinator_address"), num_processes=count, process_id=index,
                    initialization_timeout=_timeout(initialization_timeout, "initialization timeout"),
                    heartbeat_timeout=_timeout(heartbeat_timeout, "heartbeat timeout"),
                    shutdown_timeout=_timeout(shutdown_timeout, "shutdown timeout"), origins=origins,
                    names=names)


def _missing_message(settings: Settings, error: BaseException) -> str:
    how = {"coordinator_address": f"{ENV_COORDINATOR}=HOST:PORT", "num_processes": f"{ENV_NUM_PROCESSES}=N",
           "process_id": f"{ENV_PROCESS_ID}=I"}
    missing = [k for k in how if getattr(settings, k) is None]
    if not missing:
        return f"jax.distributed cannot start: {_first_line(error)} ({settings.describe()})"
    options = " / ".join(settings.names[k] for k in missing if k in settings.names)
    return (f"cannot start several processes: {', '.join(k.replace('_', ' ') for k in missing)} not given and no "
            f"cluster (Cloud TPU, SLURM, Open MPI, Kubernetes) detected; set {', '.join(how[k] for k in missing)} "
            f"in every process's environment" + (f" (or {options})" if options else "")
            + f" [jax: {_first_line(error)}]")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def enable_cpu_collectives() -> None:
    """Cross-process collectives for CPU devices: gloo over TCP, unless another one is chosen.

    Needed for several CPU processes to compute together (jax 0.10 defaults to gloo already; older
    and future versions may not). Harmless for GPU/TPU runs, whose collectives do not use it.
    """
    import jax

    if getattr(jax.config, "jax_cpu_collectives_implementation", None) in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def initialize(settings: Settings) -> None:
    """Start `jax.distributed` with ``settings``; DistributedSetupError (one line) if it cannot.

    Must run before anything starts JAX's backend (``jax.devices()``, any computation). Blocks until
    every process has registered with the coordinator, at most ``settings.initialization_timeout``
    seconds; then this process exits with status 2 after printing one ``error:`` line, since JAX
    would otherwise abort it from C++ with a stack trace.
    """
    import jax
    from jax._src import xla_bridge  # public API has no "has the backend started?"

    if jax.distributed.is_initialized():
        return
    if xla_bridge.backends_are_initialized():
        raise DistributedSetupError("jax.distributed must start before anything uses JAX's devices; call "
                                    "adain_jax.distributed.initialize() first thing in the program")
    enable_cpu_collectives()
    who = "this process" if settings.process_id is None else f"process {settings.process_id}"
    if settings.num_processes is not None:
        who += f" of {settings.num_processes}"
    where = settings.coordinator_address or "the cluster's coordinator"
    if settings.process_id == 0:
        waiting = (f"process 0 started the coordinator at {where} but not all {settings.num_processes} processes "
                   f"connected to it")
    else:
        waiting = f"{who} could not register with the coordinator at {where}"
    if settings.process_id == 0 and settings.coordinator_address:
        # JAX cannot always report a taken port: on some runs its gRPC server fails to bind and the
        # process dies with a segmentation fault. Binding it ourselves first turns that into one line.
        _check_port_free(os.environ.get("JAX_COORDINATOR_BIND_ADDRESS") or settings.coordinator_address,
                         f"jax.distributed cannot start ({settings.describe()}): the port of {where} is taken; "
                         f"is the port of {where} already in use on process 0's host? Pick another free port")
    watchdog = _Watchdog(settings.initialization_timeout, (
        f"error: multi-process start timed out after {settings.initialization_timeout} s: {waiting}. Start the same "
        f"command in every process with the same coordinator address and process count and distinct process ids, "
        f"check that process 0's host and port are reachable, or raise the timeout"))
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=settings.coordinator_address, num_processes=settings.num_processes,
            process_id=settings.process_id,
            initialization_timeout=settings.initialization_timeout + _JAX_TIMEOUT_MARGIN,
            heartbeat_timeout_seconds=settings.heartbeat_timeout,
            shutdown_timeout_seconds=settings.shutdown_timeout)
    except (ValueError, TypeError) as e:  # a value neither given nor detected
        raise DistributedSetupError(_missing_message(settings, e)) from None
    except Exception as e:  # noqa: BLE001 - JaxRuntimeError (e.g. the coordinator's port is taken), RuntimeError
        hint = ""
        if "rpc server" in str(e).lower():
            hint = f"; is the port of {where} already in use on process 0's host? Pick another free port"
        raise DistributedSetupError(f"jax.distributed cannot start ({settings.describe()}): "
                                    f"{_first_line(e)}{hint}") from None
    finally:
        watchdog.cancel()
    # Without jax.process_index(): that would start the backend, which the caller may still configure.
    logging.getLogger(__name__).info("JAX distributed runtime started (%s)", settings.describe())


def _check_port_free(address: str, message: str) -> None:
    """DistributedSetupError(``message``) if the port of ``address`` cannot be bound on this host."""
    import socket

    match = _ADDRESS.match(address)
    if match is None:
        return  # resolve() checked the coordinator address; an odd bind address is JAX's to judge
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            probe.bind(("", int(match["port"])))
        except OSError:
            raise DistributedSetupError(message) from None


class _Watchdog:
    """Prints ``message`` and ends the process (status 2) if not cancelled within ``seconds``.

    The wait happens in JAX's C++ code with the GIL released, so a Python thread can still report.
    """

    def __init__(self, seconds: float, message: str):
        self.seconds, self.message = seconds, message
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distributed-start-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        if not self._done.wait(self.seconds):
            print(self.message, file=sys.stderr, flush=True)
            exit_now(2)

    def cancel(self) -> None:
        self._done.set()


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is what a cross-process operation raises when another process has gone.

    Only meaningful in a multi-process run (JAX and gloo report a dead peer as a runtime error whose
    text mentions gloo, the connection, the coordination service or a barrier).
    """
    return bool(_PEER_FAILURE.search(f"{type(error).__name__}: {error}"))


def peer_failure_message(error: BaseException, process_index: int, process_count: int) -> str:
    """One line for a run whose other process died: what happened and how to go on."""
    return (f"process {process_index} of {process_count}: another process of this run stopped or became "
            f"unreachable, so this one stops too ({_first_line(error)}). Start the same command in every "
            f"process again to resume from the last checkpoint")


def exit_now(status: int) -> NoReturn:
    """Flush the output and end this process at once, skipping ``atexit`` handlers.

    After a peer died, JAX's exit handler would wait at a shutdown barrier the dead process never
    reaches (up to the shutdown timeout) and then abort with a stack trace.
    """
    # A closed stream has nothing left to flush, and nothing may stop the exit.
    for handler in logging.getLogger().handlers + _absl_handlers():
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _absl_handlers() -> list:
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is None:
        return []
    try:
        return [absl_logging.get_absl_handler()]
    except Exception:  # noqa: BLE001 - absl not set up in this process
        return []

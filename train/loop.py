"""The training loop: batches in; metrics, sample grids and checkpoints out; stopping on a signal.

`TrainLoop.run` takes a train state at ``start_step`` through ``config.num_steps`` compiled steps
(`train.train.compile_train_step`, `train.gan.compile_gan_steps`). Per step: this host's batch from
`train.input_pipeline`, sharded onto the mesh; at most ``max_steps_in_flight`` steps dispatched ahead;
the step's metrics (whatever keys it returns) averaged every ``log_every`` steps (`train.metric_writer`);
a checkpoint every ``checkpoint_every`` steps, at the end and on any exit (`train.checkpointing`); the
sample grid every ``sample_every`` steps.

The loop knows nothing of the model: every run passes its ``sample_writer`` (`train.train`'s decoder
grid, `train.gan_samples`); the AdaIN decoder run passes its content and style streams (the batches
and the data fingerprints follow from them), other runs (`train.gan`) a ``loader`` and ``meta_extra``.
"""

from __future__ import annotations

import collections
import json
import pathlib
import signal
import threading
import time
from typing import Any, Callable

import absl.logging as logging
import jax
import numpy as np

from adain_jax import parallel
from train import checkpointing, input_pipeline, metric_writer

LAST_VALUE_KEYS = ("lr",)  # logged as the last step's value; every other metric as the mean since the last log


class StopRequest:
    """Turns SIGTERM and a first SIGINT into a flag the loop checks after each step."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum
        logging.warning("Received %s: stopping after this step and saving a checkpoint",
                        signal.Signals(signum).name)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self) -> bool:
        flag = self.signum is not None
        if jax.process_count() > 1:  # every host must stop at the same step
            from jax.experimental import multihost_utils

            flag = bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
        return flag




def _host_metrics(metrics) -> dict[str, float]:
    return {k: float(np.asarray(v.addressable_data(0))) for k, v in metrics.items()}


class TrainLoop:
    """Steps ``start_step + 1 .. config.num_steps`` of one run, with everything they write."""

    def __init__(self, config, workdir: pathlib.Path, mesh, step_fn: Callable, ckpt: checkpointing.Checkpointer,
                 content: input_pipeline.ImageStream | None = None, style: input_pipeline.ImageStream | None = None,
                 *, start_step: int, position: int, loader=None,
                 sample_writer: Callable[[Any, int], tuple[pathlib.Path, np.ndarray]] | None = None,
                 meta_extra: dict[str, Any] | None = None, progress_keys: tuple[str, ...] = ("loss",)):
        """``content``/``style``: the decoder run's streams. Otherwise ``loader`` (an iterator of host batches
        with ``close()`` and ``skipped``, starting at ``position``) and ``meta_extra`` (recorded in every
        checkpoint's meta). ``sample_writer(state, step) -> (path, image)``: called on process 0 every
        ``sample_every`` steps (None: no samples). ``progress_keys``: the metrics shown on the progress bar."""
        self.config, self.workdir, self.mesh, self.step_fn, self.ckpt = config, workdir, mesh, step_fn, ckpt
        self.start_step, self.position = start_step, position  # the global sample index at start_step
        self.is_main = jax.process_index() == 0
        self.progress_keys = progress_keys
        self.writer = metric_writer.MetricWriter(workdir, resume_step=start_step, enabled=self.is_main)
        if content is not None:
            meta_extra = {"content_fingerprint": content.source.fingerprint,
                          "style_fingerprint": style.source.fingerprint, **(meta_extra or {})}
        self.meta_extra = meta_extra or {}
        self.sample_writer = sample_writer if config.sample_every > 0 and self.is_main else None
        # On CPU wait for each step: many unfinished all-reduces on the host platform can deadlock.
        self.max_in_flight = config.max_steps_in_flight or (1 if jax.default_backend() == "cpu" else 2)
        self.pending: collections.deque = collections.deque()  # metrics of dispatched steps not yet fetched
        self.window: list[dict[str, float]] = []  # fetched metrics since the last log
        self.window_start = time.time()
        self.last_saved = start_step
        self.loader = loader if loader is not None else input_pipeline.create_loader(config, content, style, position)
        from tqdm import tqdm

        self.bar = tqdm(total=config.num_steps, initial=start_step, unit="step", dynamic_ncols=True, smoothing=0.05,
                        disable=not (self.is_main and config.progress_bar), mininterval=1.0)

    def meta(self, step: int) -> dict[str, Any]:
        """What a checkpoint at ``step`` records besides the arrays (resume needs data_position and seed)."""
        config = self.config
        return {"step": step, "data_position": self.position + (step - self.start_step) * config.batch_size,
                "seed": config.seed, "batch_size": config.batch_size, **self.meta_extra,
                "config": json.loads(config.to_json_best_effort())}

    def save(self, state, step: int) -> None:
        if step != self.last_saved and self.ckpt.save(step, state, self.meta(step)):
            logging.info("Saving checkpoint %s", self.ckpt.step_dir(step))
        self.last_saved = step

    def drain(self, keep: int) -> None:
        """Fetch the metrics of all but the last ``keep`` dispatched steps (waiting for those steps)."""
        while len(self.pending) > keep:
            self.window.append(_host_metrics(self.pending.popleft()))

    def log(self, step: int) -> None:
        """Means over the steps since the last log (lr: the last step's), one JSON line + TensorBoard.

        A metric only some steps return (e.g. a lazy regulariser's) is the mean over those steps.
        """
        self.drain(0)
        now = time.time()
        keys = list(dict.fromkeys(k for m in self.window for k in m))
        scalars = {k: (next(m[k] for m in reversed(self.window) if k in m) if k in LAST_VALUE_KEYS
                       else float(np.mean([m[k] for m in self.window if k in m]))) for k in keys}
        scalars["skipped_images"] = self.loader.skipped
        self.writer.write_scalars(step, scalars)
        self.writer.write_scalars(step, {"steps_per_sec": len(self.window) / max(now - self.window_start, 1e-9)},
                                  jsonl=False)
        self.bar.set_postfix({k: f"{scalars[k]:.4g}" for k in self.progress_keys if k in scalars}, refresh=False)
        self.window.clear()
        self.window_start = now

    def write_samples(self, state, step: int) -> None:
        path, image = self.sample_writer(state, step)
        self.writer.write_image(step, "samples", image)
        logging.info("Wrote %s", path)

    def run(self, state):
        """Train to ``config.num_steps``; returns the final state. SystemExit(128 + signal) when stopped."""
        config, step = self.config, self.start_step
        try:
            with StopRequest() as stop, self.loader:
                while step < config.num_steps:
                    batch = parallel.put_batch(next(self.loader), self.mesh)
                    state, metrics = self.step_fn(state, batch)
                    step += 1
                    self.pending.append(metrics)
                    self.drain(self.max_in_flight - 1)
                    self.bar.update(1)
                    stopping = stop.requested() or self.ckpt.reached_preemption(step)
                    if step % config.log_every == 0 or step == config.num_steps or stopping:
                        self.log(step)
                    if step % config.checkpoint_every == 0 or stopping:
                        self.save(state, step)
                    if self.sample_writer is not None and (step % config.sample_every == 0 or step == config.num_steps):
                        self.write_samples(state, step)
                    if stopping:
                        self.ckpt.wait()
                        logging.warning("Stopped at step %d; checkpoint saved. Run the same command to resume.", step)
                        raise SystemExit(128 + (stop.signum or signal.SIGTERM))
            self.drain(0)
            self.save(state, step)
            logging.info("Finished: %d steps, checkpoints in %s", step, self.ckpt.directory)
        except SystemExit:
            raise
        except BaseException:
            if jax.process_count() > 1:
                # A save needs every process, and one may be gone (this failure may be a peer's death):
                # waiting for it (an exit save, a commit in flight) would last until JAX's heartbeat
                # timeout aborts this process. Give up the saves; train.main exits at once.
                self.ckpt.abandon()
                raise
            # Save what is there on any other exit (e.g. a data error), if the state is still intact.
            if step > self.last_saved:
                try:
                    self.save(state, step)
                except Exception as e:  # e.g. buffers donated to a step that failed
                    logging.warning("Could not save a checkpoint at exit: %s", e)
            raise
        finally:
            self.bar.close()
            self.writer.close()
        return state

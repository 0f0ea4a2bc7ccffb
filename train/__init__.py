"""Training of the AdaIN decoder: `python -m train.main --workdir DIR --config train/configs/default.py`.

Modules, one concern each:

* ``main``            the command line (absl + ml_collections config flags), one call into ``train``.
* ``train``           train state, the jitted data-parallel ``train_step`` and the training loop.
* ``parallel``        the ``('data',)`` device mesh and the shardings of batches and parameters.
* ``input_pipeline``  content/style image streams from TFDS (array_record, no TensorFlow needed).
* ``folder_dataset``  a TFDS builder that turns a local folder of images into such a dataset.
* ``checkpointing``   Orbax checkpoints in ``WORKDIR/checkpoints/<step>`` and exact resume.
* ``metric_writer``   ``WORKDIR/metrics.jsonl`` and TensorBoard event files.
* ``samples``         the grid of sample stylizations written every few steps.
* ``export``          copy a checkpoint's weights into a standalone weights directory.
* ``errors``          the one exception type for bad setup (missing data or weights).

See docs/training.md.
"""

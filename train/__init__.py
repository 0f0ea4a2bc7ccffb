"""Training: `python -m train.main --workdir DIR --config train/configs/<config>.py`.

The AdaIN decoder (``default.py``, ``tiny.py``) and the style-based generator (``stylegan_digits.py``,
``config.model = "stylegan"``) share the loop, checkpoints, input pipeline and logs.

Modules, one concern each:

* ``main``            the command line (absl + ml_collections config flags), one call into ``train`` or ``gan``.
* ``train``           the decoder: train state, the jitted data-parallel ``train_step``, and
                      ``train_and_evaluate``: mesh, input, state, restore, step and loop, each a named piece.
* ``gan``             the same for the StyleGAN generator and discriminator (``adain_jax.stylegan``);
                      ``gan_samples`` its sample grid.
* ``loop``            the training loop: steps, metrics, sample grids, checkpoints, stopping on a signal.
* ``data_sources``    where images come from: a folder or a TFDS name -> random-access records (no TensorFlow).
* ``folder_dataset``  a TFDS builder that turns a local folder of images into such a dataset.
* ``input_pipeline``  records -> deterministic, resumable content/style streams and host-local batches.
* ``checkpointing``   the train state <-> Orbax items of ``WORKDIR/checkpoints/<step>`` (names and step
                      listing: ``adain_jax.io.weights``), for exact resume.
* ``metric_writer``   ``WORKDIR/metrics.jsonl`` and TensorBoard event files.
* ``samples``         the grid of sample stylizations written every few steps.
* ``export``          copy a checkpoint's weights into a standalone weights directory.
* ``errors``          the one exception type for bad setup (missing data or weights).
* ``studies``         ``python -m train.studies``: the MVA study's variants trained, scored and reported.
* ``ablation``        ``python -m train.ablation``: the StyleGAN ablation rows; ``fd_classifier`` trains the
                      small classifier whose features its Fréchet distance uses.

See docs/training.md, docs/studies.md and docs/stylegan.md.
"""

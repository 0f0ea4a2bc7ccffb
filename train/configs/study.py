"""The CPU-sized base configuration of the MVA-study runs (`python -m train.studies`).

    python -m train.studies --study skip --workdir /tmp/study-skip --config.vgg=weights/flax
    python -m train.studies --study style_weight --workdir /tmp/study-sw --random_vgg   # no weights: a machinery check

Every variant of a study trains from this config (its own switch overridden: ``skip``/``skip_source``,
``style_weight``, ``input_norm`` or ``statistics``) with the same data, seed and step budget: tiny.py's
64x64 crops, batch 4, learning rate 1e-3, 200 steps. On a 2-core CPU a variant takes a few minutes (a
20-40 s compile, then 1-2 steps/s), a six-variant study about 20 minutes. ``--config.KEY=VALUE`` overrides
anything, e.g. the full-scale GPU run of docs/studies.md (``--config.num_steps=160000`` on COCO/WikiArt).

Held-out pairs: unless ``heldout_content`` / ``heldout_style`` name folders of their own, ``heldout_count``
content and ``heldout_count`` style images are drawn (seeded by ``seed``) from the content and style folders
and kept out of training (the training folders become folders of links in WORKDIR/data/train); every
content x style combination of them is a held-out pair. They are resized (shorter side) and centre-cropped
to ``eval_size``. What to expect at this size: the losses fall over the first hundred steps, the pictures
are blurry 64 px reconstructions; the report compares variants, it does not make art.
"""

import ml_collections

from train.configs import tiny


def get_config() -> ml_collections.ConfigDict:
    config = tiny.get_config()
    config.sample_every = 0  # the study's report has its own picture grid
    config.checkpoint_every = 100
    config.keep_checkpoints = 1
    config.log_every = 10

    # The study's own keys (train.studies; training ignores them).
    config.heldout_content = ""  # a folder of held-out content images; "": drawn from config.content
    config.heldout_style = ""  # likewise for the styles
    config.heldout_count = 3  # held-out images per side: heldout_count^2 pairs
    config.eval_size = 128  # held-out images: shorter side resized, centre-cropped (a multiple of 8)
    config.grid_pairs = 4  # pairs shown in the picture grids
    config.alphas = "0,0.25,0.5,0.75,1"  # the alpha_grid study's inference-time alphas
    return config

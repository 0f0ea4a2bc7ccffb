"""StyleGAN on scikit-learn's digits, sized for a CPU: 16x16 grey samples that read as digits in minutes.

    python -m train.main --config train/configs/stylegan_digits.py --workdir workdir/digits

Data: ``sklearn:digits`` (`train.data_sources`), scikit-learn's copy of the UCI handwritten digits:
1797 grey 8x8 images with labels, shipped inside the scikit-learn wheel, so nothing is downloaded.
Chosen over scikit-image's face set because (1) 1797 images of 10 classes are a real distribution
to learn (the face set is a few dozen pictures: a GAN would memorise it), (2) the labels let the
ablation (`train.ablation`) train a small classifier whose features give a Fréchet distance, and (3)
8x8 -> 16x16 (bilinear) keeps every step cheap on two cores. Every image is resized to
``resolution`` (16) by the input pipeline; ``--config.data=DIR`` (a folder of images) or a TFDS
name takes the same config to real data, with ``--config.resolution``, ``--config.channels=3`` and
more features for GPUs/TPUs.

Model: the full StyleGAN generator of `adain_jax.stylegan` (8-layer mapping network with lr
multiplier 0.01, learned constant input, per-layer AdaIN styles, noise inputs, mixing
regularisation with probability 0.9), 64-d z/w, 64 -> 32 features; its discriminator mirrors it
with minibatch standard deviation. Non-saturating logistic loss, R1 (gamma 1) every 4th
step (lazy, scaled by 4), Adam lr 0.002 with betas (0, 0.99), batch 32, EMA of G (decay 0.995) for
the samples.

What to expect on a 2-core CPU (measured 2026-11-29 on this machine, shared with ~5 other sessions
running test suites, load average 5-10): 30-75 s compiling the two programs (R1 step, plain step),
then 2.2-3 steps/s (70-95 images/s) with a second training process beside it, about 5.5-6 steps/s
without, and about 12 steps/s when the machine was quieter (1500-step ablation rows took 2.1-8.1
min). The samples (WORKDIR/samples/step_*.png, the EMA generator on seeds 0-63, every
``sample_every`` steps) show blobs at step 500 and mostly recognisable digits from about step
1500-2000: 5-15 minutes.
The ablation rows (`train.ablation`) switch ``use_mapping``/``use_styles``, ``const_input``,
``use_noise`` and ``mixing_prob`` on top of this config.
"""

import ml_collections

from train.configs import default

# The keys every run shares with the decoder's config (loop, logs, checkpoints, multi-process start).
SHARED_KEYS = ("tfds_data_dir", "image_key", "max_steps_in_flight", "compilation_cache_dir", "distributed",
               "coordinator_address", "num_processes", "process_id", "coordinator_timeout", "heartbeat_timeout",
               "progress_bar")


def get_config() -> ml_collections.ConfigDict:
    base = default.get_config()
    config = ml_collections.ConfigDict()
    config.model = "stylegan"  # train.main dispatches on this key (absent: the AdaIN decoder)
    for key in SHARED_KEYS:
        config[key] = base[key]

    # Data: "sklearn:digits", a folder of images, or a prepared TFDS dataset name.
    config.data = "sklearn:digits"
    config.data_split = "train"
    config.keep_aspect = True  # shorter side to `resolution`, then a random square crop (digits are square)
    config.num_workers = 2
    config.prefetch = 2

    # Generator (adain_jax.stylegan.GeneratorConfig) and discriminator.
    config.resolution = 16
    config.channels = 1
    config.latent_dim = 64
    config.max_features = 64
    config.min_features = 32
    config.mapping_layers = 8
    config.mapping_lr_mul = 0.01
    config.use_mapping = True  # ablation row C: mapping network and styles (with use_styles)
    config.use_styles = True
    config.const_input = True  # ablation row D: learned constant instead of the traditional input
    config.use_noise = True  # ablation row E
    config.d_max_features = 64
    config.d_min_features = 32
    config.mbstd_group = 4

    # Objective and optimiser.
    config.mixing_prob = 0.9  # ablation row F: mixing regularisation
    config.r1_gamma = 1.0
    config.r1_every = 4  # lazy R1: every 4th step, scaled by 4 (1: every step)
    config.g_lr = 0.002
    config.d_lr = 0.002
    config.adam_b1 = 0.0
    config.adam_b2 = 0.99
    config.ema_decay = 0.995
    config.w_avg_decay = 0.995
    config.batch_size = 32
    config.num_steps = 3000

    # Loop, logs, checkpoints, samples.
    config.seed = 0
    config.log_every = 50
    config.checkpoint_every = 500
    config.keep_checkpoints = 2
    config.sample_every = 500  # 0: no sample grids
    config.num_samples = 8  # the grid is num_samples x num_samples
    config.sample_size = 48  # cell size in the grid, pixels

    # Ablation (train.ablation): the Fréchet distance's sample count, its classifier's training steps and seed.
    config.fd_samples = 2000
    config.fd_classifier_steps = 800
    config.fd_classifier_seed = 0  # not config.seed: tables of runs with different seeds share one feature space
    return config

"""The paper's training setup (Huang & Belongie 2017, as in the PyTorch port's train.py).

    python -m train.main --workdir workdir/adain --config train/configs/default.py \
        --config.vgg=weights/flax --config.content=coco/2017 --config.style=/data/wikiart

Adam (lr 1e-4, inverse-time decay 5e-5 per step: lr / (1 + 5e-5 * step)), batch 8, 160,000 steps,
content weight 1, style weight 10; every image's shorter side resized to 512 (aspect kept), then a
random 256x256 crop. ``vgg`` is a weights directory written by ``python -m convert.vgg_to_flax``
(only its encoder is used; the decoder starts from PyTorch's default initialisation). ``content``
and ``style`` are each a local folder of images (searched recursively; WikiArt has no TFDS builder,
so pass its folder) or a TFDS dataset prepared in the array_record format under ``tfds_data_dir``.

What to expect: the total loss starts in the tens (mostly style loss) and falls quickly over the
first few thousand steps, then slowly; TensorBoard (``tensorboard --logdir WORKDIR``) shows
train/loss, train/content_loss, train/style_loss, train/lr and a grid of sample stylizations every
``sample_every`` steps; checkpoints land in WORKDIR/checkpoints/<step> every 10,000 steps (the last
3 kept) and on exit. Each step is 3 VGG passes + 1 decoder pass + their backward at 256x256, batch
8: on one modern GPU a few steps per second (about a day for 160k steps); on a CPU, impractically
slow - use tiny.py there.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # Data: a folder of images or a TFDS dataset name (prepared as array_record in tfds_data_dir).
    config.content = "coco/2017"
    config.style = ""  # required: e.g. the WikiArt folder
    config.content_split = "train"
    config.style_split = "train"
    config.image_key = "image"  # the image feature of TFDS datasets
    config.tfds_data_dir = ""  # default: $TFDS_DATA_DIR or ~/tensorflow_datasets (folders are built there too)
    config.image_size = 512  # shorter side after resizing
    config.crop_size = 256  # random square crop
    config.keep_aspect = True  # False: the port's Resize((512, 512)), which distorts the aspect ratio
    config.num_workers = 16  # image decoding threads per host (the port's --n_threads)
    config.prefetch = 4  # batches decoded ahead

    # Model.
    config.vgg = ""  # required: weights directory from `python -m convert.vgg_to_flax`
    config.init_decoder = "random"  # or "vgg": start from the decoder in the vgg directory (fine-tuning)
    config.dtype = "float32"  # of the convolutions; "bfloat16" (faster on GPU/TPU, AMX, AMD Zen 5); "auto": the faster
    # Decoder variants and study switches of the MVA study (adain_jax/model/variants.py). skip, skip_source
    # and input_norm are part of the model: recorded with the checkpoints, rebuilt by load_weights/stylize.
    config.skip = "none"  # "add" | "concat": relu3_1, relu2_1, relu1_1 into decoder conv3_1, conv2_1, conv1_1
    config.skip_source = "content"  # whose encoder features the skips carry: "content" | "style" | "both" (sum)
    config.input_norm = "none"  # "imagenet": ImageNet mean/std normalisation of [0, 1] images before the VGG
    config.statistics = "instance"  # "batch": style statistics pooled over the mini-batch (training only)

    # Objective and optimiser (train.py of the PyTorch port).
    config.content_weight = 1.0
    config.style_weight = 10.0
    config.style_weight_warmup = 0  # >0: the style weight grows linearly from 0 over this many steps
    config.lr = 1e-4
    config.lr_decay = 5e-5
    config.lr_warmup = 0  # >0: the learning rate grows linearly over this many steps (fine-tuning: fresh Adam)
    config.batch_size = 8  # global, over all devices and hosts
    config.num_steps = 160_000

    # Loop, logs, checkpoints.
    config.seed = 0  # decoder initialisation, data order and crops
    config.log_every = 100  # metrics.jsonl / TensorBoard: means over the last log_every steps
    config.checkpoint_every = 10_000
    config.keep_checkpoints = 3
    config.sample_every = 5_000  # 0: no sample grids
    config.num_samples = 4  # sample grid: this many contents x this many styles
    config.sample_size = 256
    config.sample_content = ""  # a folder: the grid's contents (its first images by name); "": training images
    config.sample_style = ""  # likewise the grid's styles, e.g. a held-out split
    config.max_steps_in_flight = 0  # 0: 1 on CPU, 2 on accelerators
    config.compilation_cache_dir = ""  # a persistent XLA cache directory speeds up restarts
    config.distributed = False  # multi-process: start jax.distributed first (adain_jax.distributed)
    config.coordinator_address = ""  # HOST:PORT of process 0; "": $JAX_COORDINATOR_ADDRESS or the cluster's
    config.num_processes = 0  # 0: $JAX_NUM_PROCESSES or the cluster's
    config.process_id = -1  # -1: $JAX_PROCESS_ID or the cluster's
    config.coordinator_timeout = 300  # s for every process to reach the coordinator, then one error line
    config.heartbeat_timeout = 100  # s after which a silent process counts as dead and the others stop
    config.progress_bar = True
    return config

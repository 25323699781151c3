"""The seed project's ACT: two 480x640 cameras (602 encoder tokens), ACT's paper hyper-parameters.

    python -m act_jax.train --config configs/seed.py --workdir runs/seed

Architecture and optimiser as the original project trained it: dim 512, 8 heads, FFN 3200,
4 encoder layers (its config file; the write-up says 3), 1 decoder layer, 4 VAE encoder layers,
ResNet18, chunk 100 (51,597,190 parameters: LeRobot's count at its defaults), batch 8, AdamW at
1e-5 (backbone too), weight decay 1e-4, gradient clipping at 10, KL weight 10. One train step takes
~30 s on the 2-core CPU (see bench/train_speed.py): it is meant for a GPU.

Everything else comes from configs/sim_default.py.
"""

from configs import sim_default


def get_config():
    config = sim_default.get_config()

    model = config.model
    model.image_size = (480, 640)
    model.chunk_size = 100
    model.dim_model = 512
    model.n_heads = 8
    model.dim_feedforward = 3200
    model.n_encoder_layers = 4  # the seed's config file (its write-up says 3): LeRobot's 51.6M
    model.n_decoder_layers = 1
    model.n_vae_encoder_layers = 4
    model.backbone_width = 1.0
    model.use_vae = True
    model.latent_dim = 32

    # Its own dataset: the same sim expert recorded at full camera resolution.
    config.data.name = "sim_demos_480x640"
    config.data.episodes_dir = "data/episodes/sim_demos_480x640"
    # Its 100 sim demos of ~156 steps at 2x480x640 are ~27 GiB decoded: hold PNG (~0.6 GiB) and
    # decode per batch (bench/data_speed.py, bench/reference_results/cpu/data_speed.json).
    config.data.decode = "lazy"

    train = config.train
    train.batch_size = 8
    train.num_steps = 100_000
    train.lr = 1e-5
    train.lr_backbone = 1e-5
    train.warmup_steps = 0
    train.schedule = "constant"
    train.val_loss_every = 5000
    train.checkpoint_every = 5000
    return config

r"""A minute-scale ACT for tests and smoke runs: 32x32 images, a 2-head 32-wide transformer.

    python -m act_jax.train --config configs/tiny.py --workdir /tmp/tiny \
        --config.data.dataset_dir=<a built act_episodes dataset with 32x32 frames>

Only useful to check that the machinery works; it learns little.
"""

from configs import sim_default


def get_config():
    config = sim_default.get_config()

    model = config.model
    model.image_size = (32, 32)
    model.chunk_size = 8
    model.dim_model = 32
    model.n_heads = 2
    model.dim_feedforward = 64
    model.n_encoder_layers = 1
    model.n_decoder_layers = 1
    model.n_vae_encoder_layers = 1
    model.latent_dim = 8
    model.backbone_width = 0.125

    config.data.name = "tiny"
    config.data.episodes_dir = ""
    config.data.record_episodes = 0
    config.data.val_batches = 2

    train = config.train
    train.batch_size = 4
    train.num_steps = 4
    train.lr = 1e-3
    train.lr_backbone = 1e-3
    train.warmup_steps = 2
    train.log_every = 2
    train.val_loss_every = 2
    train.checkpoint_every = 2
    return config

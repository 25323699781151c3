r"""The CPU default trained on the 5 named cube locations only: the base of the memorisation tests.

    python -m act_jax.train --config configs/sim_named.py --workdir runs/named_base
    python -m interp.freeze_finetune --base runs/named_base --workdir runs/ft_decoder_mlp \
        --trainable decoder_mlp --locations held_out --demos 60 --steps 1500

Like the original project's dataset (50 demos at 5 places), so the question "does the policy
interpolate between the places it saw, or look them up?" can be asked of the same kind of model:
the held-out locations 5-8 lie between the named ones, 9 and 10 outside them
(`hardware/sim/cube.py`).
"""

from configs import sim_default


def get_config():
    config = sim_default.get_config()
    data = config.data
    data.name = "sim_named_50"
    data.episodes_dir = "data/episodes/sim_named_50"
    data.record_episodes = 50  # 10 at each named location
    data.record_locations = "named"
    # Five places are learnt sooner than a continuum: 4000 steps gave 10/10 rollouts at 4000.
    config.train.num_steps = 4000
    config.eval.distribution = "named"
    return config

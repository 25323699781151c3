"""TFDS builder for recorded episodes (simulated demos and real teleoperation share it)."""

from act_jax_datasets.episodes.episodes_dataset_builder import (
    ActEpisodes,
    build,
    load,
    make_example,
    rebuild_hint,
)

__all__ = ["ActEpisodes", "build", "load", "make_example", "rebuild_hint"]

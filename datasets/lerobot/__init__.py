"""TFDS builder that converts a LeRobot dataset on local disk (v2.x or v3.0) to `act_episodes`."""

from act_jax_datasets.lerobot.lerobot_dataset_builder import (
    Conversion,
    LerobotActEpisodes,
    build,
    parse_camera_map,
)
from act_jax_datasets.lerobot.lerobot_format import LerobotSource, canonical_joint_name
from hardware.conventions import parse_image_size

__all__ = [
    "Conversion",
    "LerobotActEpisodes",
    "LerobotSource",
    "build",
    "canonical_joint_name",
    "parse_camera_map",
    "parse_image_size",
]

"""Per-frame labels of an `act_episodes` episode, for probes: who, when, where, what, which phase.

Labels per frame (`LABELS` has each field's meaning): episode, frame, location id, the cube's
start pose, arm state, task phase, ground-truth chunk with its padding mask, predicted chunk.
The episode format records the cube's pose at reset only, not per frame: `cube_start_pose` is
the cube's position while it rests, and no longer where it is once grasped (phase >= 1).

Task phase, from the commanded gripper (action[:, 5]) of each episode: with lo and hi its
minimum and maximum, "closed" means below (lo + hi) / 2; frames before the first closed command
are 0 "approach" (reach, descend, the start of closing), frames from the first to the last closed
command are 1 "grasp_and_carry" (closing, lift, transport, lower), frames after it are 2
"release" (opening, retreat). An episode whose gripper command moves less than
`MIN_GRIPPER_TRAVEL` never grasps and is all approach. The command, not the measured gripper, is
used because a held cube stops the jaws (~18 units in the sim) short of the closed command: the
command is the operator's decision, the measurement depends on what is in the jaws.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

PHASES = ("approach", "grasp_and_carry", "release")
GRIPPER = 5  # index of the gripper in state and action
MIN_GRIPPER_TRAVEL = 10.0  # LeRobot gripper units (0..100)
LABELS = {
    "episode": "episode_index from the episode metadata",
    "episode_position": "position of the episode in the dataset (0..episodes-1)",
    "frame": "step t within the episode",
    "episode_length": "T, the episode's number of steps",
    "location_id": "named cube start location, -1 for the continuous region",
    "cube_start_pose": "(7,) cube at reset: x, y, z (m), quaternion w, x, y, z; not per frame",
    "success": "the episode achieved the task",
    "state": "(6,) measured joint state, dataset units (degrees, gripper 0..100)",
    "phase": "0 approach, 1 grasp_and_carry, 2 release (rule in interp.collect)",
    "gt_actions": "(C, 6) recorded actions t..t+C-1, dataset units; past the end the last repeats",
    "gt_is_pad": "(C,) True where the ground-truth chunk runs past the episode end",
    "pred_actions": "(C, 6) the network's chunk, un-normalised to dataset units (interp.collect)",
}


def task_phase(gripper_action: np.ndarray) -> np.ndarray:
    """(T,) commanded gripper -> (T,) int8 phase (the rule in the module docstring)."""
    g = np.asarray(gripper_action, np.float64)
    phase = np.zeros(len(g), np.int8)
    lo, hi = g.min(), g.max()
    if hi - lo < MIN_GRIPPER_TRAVEL:
        return phase
    closed = np.flatnonzero(g < (lo + hi) / 2)
    phase[closed[0] : closed[-1] + 1] = 1
    phase[closed[-1] + 1 :] = 2
    return phase


def episode_labels(example: Mapping, position: int, chunk_size: int) -> dict[str, np.ndarray]:
    """Every label of one `act_episodes` example except `pred_actions`: {field: (T, ...)}."""
    meta = example["episode_metadata"]
    state = np.asarray(example["observation"]["state"], np.float32)  # (T, 6)
    action = np.asarray(example["action"], np.float32)  # (T, 6)
    t_len = len(state)
    padded = np.concatenate([action, np.repeat(action[-1:], chunk_size - 1, axis=0)])
    steps = np.arange(t_len)[:, None] + np.arange(chunk_size)[None]  # (T, C)
    full = lambda v, dtype: np.full(t_len, v, dtype)
    return {
        "episode": full(meta["episode_index"], np.int32),
        "episode_position": full(position, np.int32),
        "frame": np.arange(t_len, dtype=np.int32),
        "episode_length": full(t_len, np.int32),
        "location_id": full(meta["location_id"], np.int32),
        "cube_start_pose": np.tile(np.asarray(meta["cube_start_pose"], np.float32), (t_len, 1)),
        "success": full(bool(meta["success"]), np.bool_),
        "state": state,
        "phase": task_phase(action[:, GRIPPER]),
        "gt_actions": padded[steps],  # (T, C, 6)
        "gt_is_pad": np.arange(chunk_size)[None] >= (t_len - np.arange(t_len))[:, None],
    }

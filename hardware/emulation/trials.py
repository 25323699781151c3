"""Trials of a controller on the emulated follower: the sim's pick-and-place task, driven
through the whole servo stack, judged by the task's own success check.

    world = EmulatedFollower("so101", image_size=(96, 128)).start()
    try:
        episodes = run_trials(world, make_controller, episodes=5, seed=0, max_steps=400)
    finally:
        world.stop()

Episode i resets the task with `seed + i` (a `SimTask` reset: arm at rest, the cube's start,
servos cool), runs one `hardware.arms.episode.run_episode` on the follower's `ServoArm` (parked
with torque off after each), and counts success as the check holding `settle_steps` ticks in a
row (`HeldFor`, the rule evaluation uses). Trials stop early at a protective stop or a failed
camera. `hardware.deploy --emulate` is this with an ACT policy as the controller.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hardware.arms.episode import Episode, run_episode
from hardware.control_loop import HeldFor
from hardware.emulation.follower import EmulatedFollower


def run_trials(
    world: EmulatedFollower,
    make_controller: Callable[[], Callable[[dict], np.ndarray]],
    *,
    episodes: int = 1,
    seed: int = 0,
    max_steps: int = 400,
    settle_steps: int = 5,
    park_pose: tuple[float, ...] | None = None,
) -> list[Episode]:
    """Runs `episodes` trials on a started `world`; a fresh controller for each.

    Returns:
      One `Episode` per trial run, with `seed`, `success` and `time_to_success_s`.
    """
    arm = world.arm()
    results = []
    for i in range(episodes):
        world.reset(seed + i)
        held = HeldFor(settle_steps, world.fps)

        def on_step(t, observation, action, sent, held=held):
            world.tick()
            return held.update(t, world.success())

        ep = run_episode(
            arm,
            make_controller(),
            fps=world.fps,
            max_steps=max_steps,
            realtime=world.vclock is None,
            park_pose=park_pose,
            on_step=on_step,
        )
        ep.seed, ep.success, ep.time_to_success_s = seed + i, held.done, held.time_s
        results.append(ep)
        if ep.stop_reason or ep.failure:
            break
    return results

"""The scripted expert: a simulated teleoperator that picks the cube and drops it in the box.

Like ACT's scripted policies, it plans the whole demonstration once, at reset, from the cube's
start pose, and then replays it open-loop: its actions depend only on the start pose and the
time step, never on observations. The plan is a fixed sequence of phases with tool-centre-point
(tcp) waypoints, turned into joint targets by inverse kinematics at every control tick:

    approach   home -> 6.5 cm above the cube, gripper opening    (joint-space, minimum jerk)
    descend    straight down until the pads straddle the cube, the fixed pad 12 mm clear of it
    close      gripper to 0 (the cube stops the jaws at ~18), then hold
    lift       straight up to 7.5 cm
    transport  straight line to above the box
    lower      down to 6 cm above the table (the cube clears the walls by ~1 cm)
    open       gripper open, the cube drops into the box
    retreat    up and back towards the arm, 4 cm; the episode ends there

Grasps are vertical, with the jaws closing across two faces of the cube: of the four such
directions, the one nearest the arm's radial direction (the least wrist roll). The SO-101's
gripper has one fixed jaw, so the expert aims beside the cube, not at its centre: a 12 mm gap
between the fixed pad and the cube, which the closing jaw then slides the cube across. Aimed at
the centre, the fixed pad just touches the cube's face, and an imitation 2 mm off lands on the
cube (`bench/expert_tolerance.py` measures this). Each phase's
duration is scaled by a factor in [1 - jitter, 1 + jitter] drawn from the episode's seed, so
demonstrations differ slightly in timing but never in structure. An episode lasts ~5.2 s
(~156 ticks at 30 Hz) and ends ~1 s after the cube comes to rest in the box, the arm clear of it
(the next reset puts the arm back at its rest pose). Joint targets move at most ~7 degrees per
tick (210 deg/s), within the STS3215's no-load speed.

    python -m hardware.sim.expert --episodes 100       # success rate over random starts
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from tqdm import tqdm

from hardware.arguments import deprecated_alias
from hardware.control_loop import run_loop
from hardware.sim.arm import from_lerobot_units
from hardware.sim.cube import SPEC_HELP, distribution_arg
from hardware.sim.kinematics import top_down
from hardware.sim.robot import HOME, SimRobot
from hardware.teleop import Teleoperator

GRIPPER_OPEN = 45.0  # LeRobot units: ~39 deg, 5.7 cm between the pads
GRIPPER_CLOSED = 0.0
# A grasp happens where the gripper command first falls below half open: the "grasp point" of a
# rollout (expert or policy) is the tool point at that tick.
GRASP_COMMAND = GRIPPER_OPEN / 2
HOVER_Z = 0.065  # tcp height above the cube before descending and while lifting (m)
CARRY_Z = 0.075  # tcp height while carrying the cube to the box
RELEASE_Z = 0.06  # tcp height when opening above the box
GRASP_DZ = 0.002  # tcp above the cube's centre when closing
# The fixed jaw's pad sits exactly on the cube's face when the tcp is on the cube's centre, so the
# slightest aiming error puts it on top of the cube. The expert aims this far towards the fixed
# jaw instead, and closing slides the cube that far into the fixed pad. A policy that imitates it
# inherits the margin (see bench/expert_tolerance.py).
FIXED_JAW_CLEARANCE = 0.012  # m

# (phase, nominal duration in seconds)
PHASES = (
    ("approach", 1.0),
    ("descend", 0.6),
    ("close", 0.5),
    ("lift", 0.5),
    ("transport", 1.0),
    ("lower", 0.3),
    ("open", 0.5),
    ("retreat", 0.8),
)


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk time scaling of s in [0, 1]: zero velocity and acceleration at both ends."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s**2)


def grasp_yaw(cube_quat: np.ndarray, cube_xy: np.ndarray) -> float:
    """Closing direction (radians) across two cube faces, nearest the arm's radial direction."""
    w, x, y, z = cube_quat
    cube_yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    radial = np.arctan2(cube_xy[1], cube_xy[0])
    k = np.round((radial - cube_yaw) / (np.pi / 2))
    return float(cube_yaw + k * np.pi / 2)


@dataclasses.dataclass
class Plan:
    """A planned demonstration: the action of every tick, and when each phase starts."""

    actions: np.ndarray  # (T, 6) LeRobot units
    phase_starts: dict[str, int]
    durations: dict[str, float]  # seconds, after jitter


class ScriptedExpert(Teleoperator):
    """Scripted pick-and-place demonstrations for a `SimRobot`.

    Args:
      robot: the simulated robot it acts on (read at reset: cube start pose, box pose).
      timing_jitter: relative spread of each phase's duration.
      seed: timing draws use (seed, robot.last_seed), so a given reset seed gives the same plan.
      clearance: gap left between the fixed jaw's pad and the cube when descending (metres).
    """

    name = "expert"

    def __init__(
        self,
        robot: SimRobot,
        timing_jitter: float = 0.1,
        seed: int = 0,
        clearance: float = FIXED_JAW_CLEARANCE,
    ):
        self.robot = robot
        self.timing_jitter = timing_jitter
        self.seed = seed
        self.clearance = clearance
        self.plan: Plan | None = None
        self._t = 0

    def reset(self) -> None:
        rng = np.random.default_rng([self.seed, max(self.robot.last_seed, 0)])
        self.plan = plan_pick_and_place(
            self.robot,
            self.robot.cube_start_pose,
            self.robot.box_pose(),
            rng,
            self.timing_jitter,
            self.clearance,
        )
        self._t = 0

    @property
    def settings(self) -> dict:
        """What shapes its demonstrations: stored with recordings and checked when resuming."""
        return {"timing_jitter": self.timing_jitter, "clearance": self.clearance}

    @property
    def done(self) -> bool:
        return self.plan is not None and self._t >= len(self.plan.actions)

    def episode_extra(self) -> dict:
        """The phase starts (ticks) of the plan just played."""
        return {} if self.plan is None else {"phase_starts": self.plan.phase_starts}

    def get_action(self, observation: dict) -> np.ndarray:
        del observation  # open loop: the plan depends only on the start pose and time
        if self.plan is None:
            raise RuntimeError("ScriptedExpert.reset() must be called after the robot's reset")
        a = self.plan.actions[min(self._t, len(self.plan.actions) - 1)]
        self._t += 1
        return a.copy()


def plan_pick_and_place(
    robot: SimRobot,
    cube_pose: np.ndarray,
    box_pose: np.ndarray,
    rng: np.random.Generator,
    timing_jitter: float = 0.1,
    clearance: float = FIXED_JAW_CLEARANCE,
) -> Plan:
    """Plans a demonstration (see the module docstring). Returns the (T, 6) actions."""
    kin, fps = robot.kinematics, robot.fps
    cube_xy, cube_z = cube_pose[:2], cube_pose[2]
    box_xy = box_pose[:2]
    rot = top_down(grasp_yaw(cube_pose[3:], cube_xy))
    # The fixed pad is on the tool's -x side (the closing direction is +x): aim past the cube's
    # centre on that side, leaving `clearance` between the fixed pad and the cube's face.
    grasp_xy = cube_xy - clearance * rot[:2, 0]
    scale = rng.uniform(1 - timing_jitter, 1 + timing_jitter, size=len(PHASES))
    durations = {name: d * s for (name, d), s in zip(PHASES, scale, strict=True)}
    ticks = {name: max(2, int(round(d * fps))) for name, d in durations.items()}

    above_cube = np.array([*grasp_xy, HOVER_Z])
    at_cube = np.array([*grasp_xy, cube_z + GRASP_DZ])
    carry_start = np.array([*grasp_xy, CARRY_Z])
    above_box = np.array([*box_xy, CARRY_Z])
    at_box = np.array([*box_xy, RELEASE_Z])
    # Up and back along the line to the arm's base, clear of the box and the falling cube.
    back = -0.025 * box_xy / np.linalg.norm(box_xy)
    retreat = np.array([*(box_xy + back), RELEASE_Z + 0.03])

    home = from_lerobot_units(HOME)[:5]
    q = home.copy()
    rows: list[np.ndarray] = []  # (5 arm joints in radians, gripper in LeRobot units)
    starts = {}

    def solve(target: np.ndarray) -> np.ndarray:
        nonlocal q
        # Soft orientation: above the workspace a vertical tool can exceed the wrist's range;
        # the position is then kept and the tool tilts as little as it must.
        q = kin.ik(target, rot, q, max_iters=60, rotation_weight=0.05).q
        return q

    def joint_move(name, q_to, g_from, g_to):
        starts[name] = len(rows)
        q_from = q.copy() if not rows else rows[-1][:5]
        n = ticks[name]
        for s in min_jerk(np.arange(1, n + 1) / n):
            rows.append(np.append(q_from + s * (q_to - q_from), g_from + s * (g_to - g_from)))

    def line(name, p_from, p_to, g_from, g_to):
        starts[name] = len(rows)
        n = ticks[name]
        for s in min_jerk(np.arange(1, n + 1) / n):
            q_s = solve(p_from + s * (p_to - p_from))
            rows.append(np.append(q_s, g_from + s * (g_to - g_from)))

    def hold(name, p, g_from, g_to, frac=0.6):
        # Gripper moves during the first `frac` of the phase, then everything holds still.
        starts[name] = len(rows)
        n = ticks[name]
        qh = solve(p)
        for s in min_jerk(np.arange(1, n + 1) / max(1, round(frac * n))):
            rows.append(np.append(qh, g_from + s * (g_to - g_from)))

    g0 = HOME[5]
    q_hover = solve(above_cube)
    q = home.copy()
    joint_move("approach", q_hover, g0, GRIPPER_OPEN)
    q = q_hover.copy()
    line("descend", above_cube, at_cube, GRIPPER_OPEN, GRIPPER_OPEN)
    hold("close", at_cube, GRIPPER_OPEN, GRIPPER_CLOSED)
    line("lift", at_cube, carry_start, GRIPPER_CLOSED, GRIPPER_CLOSED)
    line("transport", carry_start, above_box, GRIPPER_CLOSED, GRIPPER_CLOSED)
    line("lower", above_box, at_box, GRIPPER_CLOSED, GRIPPER_CLOSED)
    hold("open", at_box, GRIPPER_CLOSED, GRIPPER_OPEN, frac=0.5)
    line("retreat", at_box, retreat, GRIPPER_OPEN, GRIPPER_OPEN)

    rows = np.asarray(rows)  # (T, 6)
    actions = np.degrees(rows)
    actions[:, 5] = rows[:, 5]
    return Plan(actions.astype(np.float32), starts, durations)


def evaluate(
    episodes: int, seed: int = 0, distribution: str = "uniform", progress: bool = True
) -> dict:
    """Runs the expert from `episodes` random starts (no rendering). Returns a summary."""
    robot = SimRobot(cameras=(), distribution=distribution)
    expert = ScriptedExpert(robot)
    failures, lengths = [], []
    t0 = time.perf_counter()
    with robot:
        for i in tqdm(range(episodes), desc="expert", unit="ep", disable=not progress):
            robot.reset(seed=seed + i)
            expert.reset()
            stats = run_loop(
                robot,
                expert,
                fps=robot.fps,
                max_steps=400,
                realtime=False,
                stop=lambda: expert.done,
            )
            lengths.append(stats.ticks)
            if not robot.success():
                failures.append(
                    {
                        "seed": seed + i,
                        "cube_start_pose": robot.cube_start_pose.tolist(),
                        "cube_end_pose": robot.cube_pose().tolist(),
                    }
                )
    n_ok = episodes - len(failures)
    return {
        "episodes": episodes,
        "successes": n_ok,
        "success_rate": n_ok / episodes,
        "distribution": distribution,
        "seed": seed,
        "mean_episode_steps": float(np.mean(lengths)),
        "max_episode_steps": int(np.max(lengths)),
        "wall_s": time.perf_counter() - t0,
        "failures": failures,
    }


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--episodes", type=int, default=100, help="random starts (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of episode 0 (default %(default)s)")
    p.add_argument(
        "--locations",
        default="uniform",
        type=distribution_arg,
        metavar="SPEC",
        help=f"cube start distribution: {SPEC_HELP} (default %(default)s)",
    )
    p.add_argument(  # the old name of --locations
        "--distribution",
        dest="locations",
        type=distribution_arg,
        action=deprecated_alias("--locations"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--json", default=None, help="also write the summary to this file")
    args = p.parse_args(argv)
    s = evaluate(args.episodes, args.seed, args.locations)
    print(
        f"expert success {s['successes']}/{s['episodes']} = {100 * s['success_rate']:.1f}% "
        f"({s['distribution']}, mean {s['mean_episode_steps']:.0f} steps, {s['wall_s']:.1f} s)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=2)


if __name__ == "__main__":
    main()

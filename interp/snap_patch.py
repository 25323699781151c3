"""Patching the midpoint of a line into its endpoints, for `interp.snap`: the first chunk, its
aim point, and the grasp point of a rollout patched at every tick.

A patch is (site, kind): "whole" (the source's value), "tokens:<group>" (the run's value with one
token group, `state` or a camera's pixels, taken from the source), or "line" (the run's value
with its component along the unit direction u = (h_B - h_A) / |h_B - h_A| replaced by the
source's). Effects (`projection`, pooled over cases by `_summary`): how far the patch moves x
from the endpoint's x toward the midpoint's, projected on that direction (1: all the way, 0: not
along it).

`decoder/layer_{i}/mlp_in` is the MLP's input only: the residual stream around the MLP carries
the unpatched value past it (in pre- and post-norm alike), so patching it, whole, is patching
what the MLP reads, and its effect equals that of patching `mlp_out` whole.

In a patched rollout the source must be remade at every tick, since the arm moves: `Shadow` is a
second sim with the cube at the midpoint whose arm copies the patched run's joints (positions
only, then `mj_forward`, no physics step) before it renders, so source and run differ in the
cube's place alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ENCODER_OUT = "encoder/out"


def aim_points(kinematics, policy, actions: np.ndarray) -> np.ndarray:
    """(n, 2) table-plane tool point commanded by the last action of each chunk (n, C, A),
    given in the model's normalised units."""
    from hardware.sim.arm import from_lerobot_units

    stats = policy.norm_stats
    last = actions[:, -1] * stats.action_std + stats.action_mean
    return np.stack([kinematics.fk(from_lerobot_units(a)[:5])[0][:2] for a in last])


def patch_list(model_config, layer: int = 0) -> list[tuple[str, str]]:
    """The (site, kind) patches `interp.snap` runs."""
    mlp = f"decoder/layer_{layer}"
    cams = [f"tokens:{c}" for c in model_config.cameras]
    out = [(ENCODER_OUT, k) for k in ("whole", "tokens:state", *cams, "line")]
    for site in (f"{mlp}/mlp_in", f"{mlp}/mlp_out"):
        out += [(site, "whole"), (site, "line")]
    return out


def patch_name(site: str, kind: str) -> str:
    return f"{site} [{kind}]"


def token_group(model_config, group: str) -> np.ndarray:
    from interp.tokens import TokenIndex

    t = TokenIndex.for_config(model_config)
    return np.array([t.state]) if group == "state" else t.camera(group)


def patched_value(kind: str, run: np.ndarray, source: np.ndarray, u: np.ndarray, model_config):
    """The patched activation (B, ...) for `kind` (module docstring); u: a sample's (...)."""
    if kind == "whole":
        return np.array(source)
    if kind.startswith("tokens:"):
        out = np.array(run)
        idx = token_group(model_config, kind.split(":", 1)[1])
        out[:, idx] = source[:, idx]
        return out
    if kind == "line":
        u = np.asarray(u, np.float64).ravel()
        r = run.reshape(len(run), -1).astype(np.float64)
        s = source.reshape(len(source), -1).astype(np.float64)
        out = r + ((s - r) @ u)[:, None] * u[None]
        return out.reshape(run.shape).astype(run.dtype)
    raise ValueError(f"unknown patch kind {kind!r}")


def direction(h_a: np.ndarray, h_b: np.ndarray) -> np.ndarray:
    d = np.asarray(h_b, np.float64).ravel() - np.asarray(h_a, np.float64).ravel()
    n = np.linalg.norm(d)
    return d / n if n > 0 else d


def projection(patched, end, mid) -> tuple[float, float]:
    """(<patched - end, mid - end>, |mid - end|^2): a patch's move toward the midpoint's value
    and the squared gap; their ratio is the effect (1: all the way)."""
    p, e, m = (np.asarray(v, np.float64).ravel() for v in (patched, end, mid))
    d = m - e
    return float((p - e) @ d), float(d @ d)


class Patcher:
    """Runs a policy's network on one or more observations with one site patched."""

    def __init__(self, policy, sites: Sequence[str] | None = None):
        self.policy = policy
        # Captured together, by one compiled program: the sites that patches read.
        patches = patch_list(policy.config.model)
        self.sites = tuple(sorted(set(sites or [s for s, _ in patches])))
        stats = policy.norm_stats
        self._norm = lambda s: ((s - stats.state_mean) / stats.state_std).astype(np.float32)
        self._unnorm = lambda a: a * stats.action_std + stats.action_mean

    def batch(self, images: dict, states: np.ndarray) -> dict:
        return {"images": images, "state": self._norm(np.asarray(states))}

    def site(self, batch: dict, site: str) -> np.ndarray:
        from interp.hooks import run_with_cache

        names = self.sites if site in self.sites else (site,)
        _, cache = run_with_cache(self.policy.model, self.policy.variables, batch, names)
        return np.asarray(cache[site])

    def actions(self, batch: dict, site: str | None = None, value=None) -> np.ndarray:
        """(B, C, A) normalised actions, with `site` set to `value` if given."""
        from interp.hooks import run_with_patches

        patches = {} if site is None else {site: np.asarray(value)}
        out, _ = run_with_patches(self.policy.model, self.policy.variables, batch, patches)
        return np.asarray(out["actions"])

    def patched_actions(self, run_batch, source_batch, site, kind, u) -> np.ndarray:
        run = self.site(run_batch, site) if kind != "whole" else None
        source = self.site(source_batch, site)
        value = patched_value(kind, run, source, u, self.policy.config.model)
        return self.actions(run_batch, site, value)

    def chunk_fn(self, shadow, site: str, kind: str, u):
        """observation -> (C, A) chunk in robot units, patched from `shadow`'s view of it."""

        def predict(observation):
            shadow.follow()
            src = shadow.robot.get_observation()
            one = lambda o: {c: o["images"][c][None] for c in self.policy.cameras}  # noqa: E731
            run_b = self.batch(one(observation), observation["state"][None])
            src_b = self.batch(one(src), src["state"][None])
            a = self.patched_actions(run_b, src_b, site, kind, u)[0]
            return self._unnorm(a)

        return predict


class Shadow:
    """A second sim with the cube at `cube_pose` whose arm follows `robot`'s (module docstring)."""

    def __init__(self, robot, cube_pose: np.ndarray):
        import mujoco

        from hardware.sim import SimRobot

        self.leader = robot
        self.robot = SimRobot(
            image_size=robot.image_size, cameras=robot.cameras, distribution="uniform"
        )
        self.robot.connect()
        self.robot.reset(cube_pose=cube_pose)
        self._mj = mujoco
        adr = self.robot.model.joint("cube").qposadr[0]
        self._cube = slice(adr, adr + 7)

    def follow(self) -> None:
        d, keep = self.robot.data, self.robot.data.qpos[self._cube].copy()
        d.qpos[:] = self.leader.data.qpos
        d.qpos[self._cube] = keep
        self._mj.mj_forward(self.robot.model, d)

    def close(self) -> None:
        self.robot.disconnect()


def grasp_target(robot, controller, max_steps: int) -> np.ndarray | None:
    """The commanded grasp point (3,) of a rollout from the robot's reset state, run until the
    gripper command falls below half open (`interp.oracles`); None if it never does."""
    from hardware.control_loop import run_loop
    from hardware.sim.arm import from_lerobot_units
    from hardware.sim.expert import GRASP_COMMAND

    found = []

    def on_step(t, observation, action, sent):
        if sent[5] < GRASP_COMMAND:
            found.append(robot.kinematics.fk(from_lerobot_units(sent)[:5])[0])
            return True
        return False

    run_loop(robot, controller, fps=robot.fps, max_steps=max_steps, realtime=False, on_step=on_step)
    return found[0] if found else None


def patched_grasps(
    policy,
    robot,
    end_pose: np.ndarray,
    mid_pose: np.ndarray,
    patches: Sequence[tuple[str, str]],
    directions: dict,
    execution: str,
    max_steps: int,
) -> dict:
    """{patch name: grasp target (3,) or None} of rollouts from `end_pose` patched from the
    midpoint's shadow at every tick."""
    from act_jax.execution import chunk_controller, make_executor

    patcher, out = Patcher(policy), {}
    shadow = Shadow(robot, mid_pose)
    try:
        for site, kind in patches:
            robot.reset(cube_pose=end_pose)
            shadow.robot.reset(cube_pose=mid_pose)
            predict = patcher.chunk_fn(shadow, site, kind, directions.get(site))
            controller = chunk_controller(predict, make_executor(execution))
            out[patch_name(site, kind)] = grasp_target(robot, controller, max_steps)
    finally:
        shadow.close()
    return out


def _summary(cases: list) -> dict:
    """Effects over (line, endpoint) cases [(num, den) or None]: each case's ratio and the
    pooled ratio sum(num) / sum(den) (as `interp.patching` pools a batch), which a case whose
    midpoint lies next to its endpoint (a tiny gap) cannot blow up."""
    ok = [c for c in cases if c is not None and c[1] > 0]
    den = sum(c[1] for c in ok)
    return {
        "pooled": sum(c[0] for c in ok) / den if den > 0 else None,
        "values": [None if c is None or c[1] <= 0 else c[0] / c[1] for c in cases],
        "gap_rms": float(np.sqrt(den / len(ok))) if ok else None,
    }


class PatchRun:
    """Every patch of `patch_list`, midpoint into both endpoints of every line.

    Args:
        policy: the `Policy`; robot: a connected `SimRobot` with the policy's cameras.
        images, states: tick-0 first ({cam: (S, T, H, W, 3)}, (S, T, 6)) of every start.
        acts: {site: (S, T, ...)} captured activations; aim: (S, T, 2) aim points.
        grasp_xy: (S, 2) unpatched rollouts' grasp points (NaN: never closed).
    """

    def __init__(self, policy, robot, images, states, acts, aim, grasp_xy):
        self.policy, self.robot = policy, robot
        self.images, self.states, self.acts = images, states, acts
        self.aim, self.grasp_xy = aim, grasp_xy
        self.patcher = Patcher(policy)
        self.patches = patch_list(policy.config.model)

    def _batch(self, s: int) -> dict:
        return self.patcher.batch({c: v[s, :1] for c, v in self.images.items()}, self.states[s, :1])

    def _aim(self, chunk: np.ndarray) -> np.ndarray:
        return aim_points(self.robot.kinematics, self.policy, chunk)[0]

    def lines(self, poses, index, mid: int, execution: str, *, rollouts: bool, steps: int, say):
        """{"patches": {name: {"chunk" | "aim" | "grasp": summary}}} over lines x endpoints."""
        effects = {patch_name(s, k): {"chunk": [], "aim": [], "grasp": []} for s, k in self.patches}
        actions = self.acts["actions"]
        for p, row in enumerate(index):
            a, b, m = int(row[0]), int(row[-1]), int(row[mid])
            dirs = {s: direction(self.acts[s][a, 0], self.acts[s][b, 0]) for s, _ in self.patches}
            for e in (a, b):
                for site, kind in self.patches:
                    chunk = self.patcher.patched_actions(
                        self._batch(e), self._batch(m), site, kind, dirs[site]
                    )
                    eff = effects[patch_name(site, kind)]
                    eff["chunk"].append(projection(chunk[0], actions[e, 0], actions[m, 0]))
                    eff["aim"].append(projection(self._aim(chunk), self.aim[e, 0], self.aim[m, 0]))
                if not rollouts:
                    continue
                say(f"line {p}: patched rollouts from start {e}")
                got = patched_grasps(
                    self.policy,
                    self.robot,
                    poses[e],
                    poses[m],
                    self.patches,
                    dirs,
                    execution,
                    steps,
                )
                ends = self.grasp_xy[[e, m]]
                for name, g in got.items():
                    ok = g is not None and np.isfinite(ends).all()
                    effects[name]["grasp"].append(projection(g[:2], *ends) if ok else None)
        return {
            "patches": {n: {k: _summary(v) for k, v in eff.items()} for n, eff in effects.items()}
        }

"""Robot profiles: what differs between arm builds (ids, servo models, protocol, setup writes).

- `koch`: Koch v1.1 follower, Dynamixel XL430-W250 (ids 1-2) and XL330-M288 (ids 3-6).
- `koch_leader`: its leader arm, XL330-M077 (ids 1-6).
- `so101` / `so100`: SO-100/SO-101, Feetech STS3215 (ids 1-6).

Setup values follow LeRobot's `configure()` for each robot and are written with torque off at
every connect.
"""

from __future__ import annotations

import dataclasses

from hardware.conventions import JOINT_NAMES
from hardware.motors.bus import Motor


@dataclasses.dataclass(frozen=True)
class ArmProfile:
    """What differs between arm builds.

    Attributes:
        name: profile key, also the `robot_type` stored with episodes.
        protocol: `"dynamixel"` or `"feetech"`.
        ids, models: per joint, in `JOINT_NAMES` order.
        baudrate: bus speed.
        full_turn: joints calibrated over the whole turn (no range sweep).
        setup: (register, per-joint value or None) written with torque off at every connect.
    """

    name: str
    protocol: str
    ids: tuple[int, ...]
    models: tuple[str, ...]
    baudrate: int = 1_000_000
    full_turn: tuple[str, ...] = ()
    setup: tuple[tuple[str, tuple[int | None, ...]], ...] = ()

    def motors(self) -> dict[str, Motor]:
        return {n: Motor(i, m) for n, i, m in zip(JOINT_NAMES, self.ids, self.models, strict=True)}


_SIX = (1, 2, 3, 4, 5, 6)
_GRIP = (None,) * 5
PROFILES: dict[str, ArmProfile] = {
    # Koch v1.1 follower (LeRobot koch_follower): extended position for the joints, current-based
    # position for the gripper.
    "koch": ArmProfile(
        "koch",
        "dynamixel",
        _SIX,
        ("xl430-w250",) * 2 + ("xl330-m288",) * 4,
        full_turn=("shoulder_pan", "wrist_roll"),
        setup=(("Return_Delay_Time", (0,) * 6), ("Operating_Mode", (4, 4, 4, 4, 4, 5))),
    ),
    "koch_leader": ArmProfile(
        "koch_leader",
        "dynamixel",
        _SIX,
        ("xl330-m077",) * 6,
        full_turn=("shoulder_pan", "wrist_roll"),
        setup=(("Return_Delay_Time", (0,) * 6), ("Operating_Mode", (4, 4, 4, 4, 4, 5))),
    ),
    # SO-101 (and SO-100) follower: LeRobot so_follower configure(); the gripper is capped to 50 %
    # torque against burnout (LeRobot PR #1809).
    "so101": ArmProfile(
        "so101",
        "feetech",
        _SIX,
        ("sts3215",) * 6,
        full_turn=("wrist_roll",),
        setup=(
            ("Return_Delay_Time", (0,) * 6),
            ("Maximum_Acceleration", (254,) * 6),
            ("Acceleration", (254,) * 6),
            ("Operating_Mode", (0,) * 6),
            ("P_Coefficient", (16,) * 6),
            ("I_Coefficient", (0,) * 6),
            ("D_Coefficient", (32,) * 6),
            ("Max_Torque_Limit", _GRIP + (500,)),
            ("Protection_Current", _GRIP + (250,)),
            ("Overload_Torque", _GRIP + (25,)),
        ),
    ),
}
PROFILES["so100"] = dataclasses.replace(PROFILES["so101"], name="so100")


def get_profile(name: str | ArmProfile) -> ArmProfile:
    if isinstance(name, ArmProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; known: {sorted(PROFILES)}") from None

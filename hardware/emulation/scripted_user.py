"""A simulated person for the calibration procedure on an emulated arm
(`hardware.arms.calibration_procedure.calibrate`), as `python -m hardware.calibrate --emulate`
and the tests run it."""

from __future__ import annotations

import numpy as np

from hardware.arms.profiles import ArmProfile


class ScriptedUser:
    """A simulated person for an emulated arm: holds it mid-range (with the servos mounted at
    random angles), then sweeps each joint through a range of motion of its own."""

    def __init__(self, emu, profile: ArmProfile, seed: int = 0, sweep_samples: int = 40):
        self.emu, self.profile = emu, profile
        rng = np.random.default_rng(seed)
        self.mount = rng.integers(0, 4096, 6)  # actual encoder reading at mid-range
        self.half = rng.integers(700, 1300, 6)  # half range of motion, ticks
        self.samples, self.k = sweep_samples, 0
        self.steps: list[str] = []

    def wait_for_user(self, message: str) -> None:
        self.steps.append(message)
        if "MIDDLE" in message:
            for i, motor_id in enumerate(self.profile.ids):
                self.emu.set(motor_id, "Homing_Offset", 0)
                self.emu.move_by_hand(motor_id, int(self.mount[i]))

    def sweep_done(self) -> bool:
        phase = 2 * np.pi * self.k / self.samples
        for i, motor_id in enumerate(self.profile.ids):
            present = 2047 + int(round(self.half[i] * np.sin(phase + i)))
            self.emu.move_by_hand(motor_id, present)
        self.k += 1
        return self.k > self.samples

"""Servo bus latency through the pty emulator at 1 Mbaud, both protocols.

    .venv/bin/python bench/servo_latency.py [--n 2000] [--out bench/results/servo_latency.json]

Measures, for a 6-joint arm (Koch: Dynamixel 2.0; SO-101: Feetech STS):
- `sync_read`: round trip of a 6-joint Present_Position sync read (send, 6 replies parsed);
- `sync_write`: host-side cost of a 6-joint Goal_Position sync write (no reply by protocol), and
  `sync_write_delivery`: from the call to the emulator logging the parsed packet;
- `tick`: one ServoArm control tick (get_observation + send_action: sync read, round-robin
  load/temperature read, safety guard, sync write).
Alongside, the bytes on the wire and their time at 1 Mbaud (10 bits a byte), which is what a real
bus adds on top of the USB adapter's latency (set the FTDI latency_timer to 1 ms).

A pty has no baud rate: these are the software costs of the stack (pyserial, parser, emulator
thread) on this machine, not a real servo's timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hardware.arms import ServoArm, get_profile
from hardware.emulation.emulated_arm import default_calibration, emulate_arm
from hardware.motors.bus import MotorBus

BAUD = 1_000_000


def _stats(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s) * 1e3
    return {
        "n": int(a.size),
        "mean_ms": float(a.mean()),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def bench_robot(robot: str, n: int) -> dict:
    profile = get_profile(robot)
    emu = emulate_arm(robot).start()
    out: dict = {"protocol": profile.protocol}
    try:
        bus = MotorBus(emu.port, profile.motors(), profile.protocol, BAUD, latency_s=0.004)
        with bus:
            proto, reg = bus.protocol, bus.models["gripper"].register("Present_Position")
            ids = list(profile.ids)
            tx = len(proto.encode_instruction(proto.sync_read(reg.address, reg.size, ids)))
            rx = 6 * proto.status_size(reg.size)
            out["sync_read_wire_bytes"] = tx + rx
            out["sync_read_wire_ms_at_1M"] = (tx + rx) * 10 / BAUD * 1e3
            reads, writes, delivery, failed = [], [], [], 0
            rng = np.random.default_rng(0)
            for _ in tqdm(range(n), desc=f"{robot} sync read/write", leave=False):
                t0 = time.perf_counter()
                r = bus.sync_read("Present_Position")
                reads.append(time.perf_counter() - t0)
                failed += not r.ok  # a scheduling stall past the 4 ms allowance: retried/flagged
                goals = {name: 2000 + int(rng.integers(-50, 50)) for name in bus.motors}
                n_log = len(emu.wire_log)
                t_mono = time.monotonic()
                t0 = time.perf_counter()
                bus.sync_write("Goal_Position", goals)
                writes.append(time.perf_counter() - t0)
                while len(emu.wire_log) == n_log:
                    time.sleep(0)
                delivery.append(emu.wire_log[n_log].t - t_mono)
            gp = bus.models["gripper"].register("Goal_Position")
            out["sync_write_wire_bytes"] = len(
                proto.encode_instruction(
                    proto.sync_write(gp.address, gp.size, {i: bytes(gp.size) for i in ids})
                )
            )
            out["sync_read"] = _stats(reads)
            out["sync_read_failed"] = failed
            out["sync_write"] = _stats(writes)
            out["sync_write_delivery"] = _stats(delivery)
        calib = default_calibration(robot)
        arm = ServoArm(robot, emu.port, calib, bus_options={"latency_s": 0.004})
        ticks = []
        with arm:
            for k in tqdm(range(n), desc=f"{robot} arm ticks", leave=False):
                t0 = time.perf_counter()
                arm.get_observation()
                arm.send_action(np.array([10 * np.sin(k / 30), 0, 0, 0, 0, 50.0]))
                ticks.append(time.perf_counter() - t0)
        out["tick"] = _stats(ticks)
        out["tick_flagged"] = int(arm.bus.stats["timeouts"] + arm.bus.stats["corrupt"])
    finally:
        emu.stop()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="samples per measurement")
    parser.add_argument("--out", type=Path, default=Path("bench/results/servo_latency.json"))
    args = parser.parse_args(argv)
    results = {
        "baudrate": BAUD,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "robots": {robot: bench_robot(robot, args.n) for robot in ("koch", "so101")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for robot, r in results["robots"].items():
        print(
            f"{robot:6s} ({r['protocol']}): sync read p50 {r['sync_read']['p50_ms']:.3f} ms "
            f"p99 {r['sync_read']['p99_ms']:.3f} ms (wire at 1 Mbaud "
            f"{r['sync_read_wire_ms_at_1M']:.3f} ms); sync write p50 "
            f"{r['sync_write']['p50_ms']:.3f} ms, delivered p50 "
            f"{r['sync_write_delivery']['p50_ms']:.3f} ms; full tick p50 {r['tick']['p50_ms']:.3f}"
            f" ms p99 {r['tick']['p99_ms']:.3f} ms"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

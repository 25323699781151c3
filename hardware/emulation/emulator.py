"""Byte-exact servo emulator on a pseudo-terminal: Dynamixel Protocol 2.0 or Feetech STS.

A thread owns the master side of a pty; the code under test opens the slave path with real
`serial.Serial`, exactly as it would open `/dev/ttyUSB0`. Each emulated servo has a byte-level
control table (EEPROM and RAM areas, addresses from `hardware.motors.tables`) and answers ping,
read, write, sync read, sync write and reboot with correctly framed status packets. Motion comes
from a `JointPhysics` (first-order servos, or the MuJoCo arm): goals written over the wire move
joints, present positions read over the wire come from the physics.

The servos' behaviour (control tables, access rules, homing, thermal shutdown) is
`hardware.emulation.firmware.ServoFirmware`; this module adds the pty, the thread, faults and logs.

Fault knobs (`Faults`), all drawn from one seeded RNG so a run is reproducible: drop, delay,
corrupt a byte, truncate, split across writes, garbage before the reply, reply from a wrong id,
forged data with a valid checksum, forced error bits, dead ids, and `unplug()` (closes the
master, so the host sees EIO).
Every instruction packet received goes into a timestamped wire log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable

from hardware.emulation.firmware import ServoFirmware, write_targets
from hardware.emulation.physics import JointPhysics
from hardware.motors.packets import InstructionPacket, Outcome, StatusPacket
from hardware.motors.parser import StreamParser

log = logging.getLogger(__name__)

# A real servo answers within about a millisecond; an emulator's thread answers when the host
# schedules it, which on a loaded machine can be tens of milliseconds later (the same thread
# steps the physics). Whatever drives an emulator gives its bus this reply allowance and its
# position reads this budget, so that a busy host is not taken for a dead servo. The cost is
# wall time, and only when a reply is really missing; a virtual clock does not see it.
EMULATED_BUS_OPTIONS = {"latency_s": 0.02}
EMULATED_READ_BUDGET_S = 0.06


class VirtualClock:
    """A clock that moves only when told: lets a 30 Hz loop and the emulator's physics run faster
    than real time. Has the `time` module's `monotonic()` and `sleep()`."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += max(0.0, float(seconds))

    advance = sleep


@dataclasses.dataclass
class Faults:
    """Fault injection knobs. Probabilities apply per reply; mutate them while running. A knob at
    zero draws nothing from the RNG, so the fault sequence depends only on the replies sent while
    faults are on.

    Attributes:
        drop: probability a reply is not sent.
        delay: probability a reply is held back by `delay_s`.
        delay_s: seconds of delay.
        corrupt: probability one byte of the reply gets a random bit flipped.
        truncate: probability the reply is cut short.
        split: probability the reply is written in two parts with a short gap.
        garbage: probability random bytes precede the reply.
        wrong_id: probability the reply carries another id (with a valid checksum).
        forge: probability the reply's data bytes are replaced by random ones *with* a valid
            checksum: what a checksum collision on a noisy line delivers.
        dead_ids: ids that never answer (unplugged cable on one servo).
        error_bits: id -> bits OR-ed into every status error byte of that id.
        only_ids: if set, the probabilistic faults hit only these ids.
    """

    drop: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.005
    corrupt: float = 0.0
    truncate: float = 0.0
    split: float = 0.0
    garbage: float = 0.0
    wrong_id: float = 0.0
    forge: float = 0.0
    dead_ids: set[int] = dataclasses.field(default_factory=set)
    error_bits: dict[int, int] = dataclasses.field(default_factory=dict)
    only_ids: set[int] | None = None


@dataclasses.dataclass(frozen=True)
class WireEntry:
    """One received instruction frame: time, raw bytes, decoded packet (None if corrupt)."""

    t: float
    raw: bytes
    packet: InstructionPacket | None


class ServoEmulator:
    """Emulated servos on one bus, behind a pty.

    Args:
        protocol: `"dynamixel"` or `"feetech"`.
        motors: motor id -> model key (e.g. `{1: "xl430-w250", 3: "xl330-m288"}`); ids map to
            physics joints in ascending order.
        physics: what moves the joints; default `FirstOrderServo` starting mid-range (2048).
        faults: fault knobs (default: none).
        seed: seeds every fault draw.
        clock: time source in seconds; physics advances to `clock()` at each packet. Pass a virtual
            clock to run control loops faster than real time.

    Use as a context manager, or `start()` / `stop()`. `port` is the slave device path.
    """

    def __init__(
        self,
        protocol: str,
        motors: dict[int, str],
        physics: JointPhysics | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.firmware = ServoFirmware(protocol, motors, physics, clock)
        self.protocol = self.firmware.protocol
        self.servos = self.firmware.servos
        self.physics = self.firmware.physics
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.clock = clock
        self.wire_log: list[WireEntry] = []
        self.fault_log: list[tuple[int, list[str]]] = []  # (id, faults applied) per reply
        self.errors: list[str] = []  # exceptions inside the emulator (tests assert it stays empty)
        self._lock = threading.RLock()
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._running = False
        self.port = ""

    @property
    def lock(self) -> threading.RLock:
        """Held while the emulator's thread answers a packet or steps the physics: hold it to see
        (or render) a still world."""
        return self._lock

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ServoEmulator:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass untouched
        self.port = os.ttyname(self._slave)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="servo-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._shut_down(ignore_close_errors=True)

    def _shut_down(self, *, ignore_close_errors: bool) -> None:
        """Stops the serving thread and closes both pty ends."""
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    if not ignore_close_errors:
                        raise
        self._master = self._slave = -1

    def __enter__(self) -> ServoEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def unplug(self) -> None:
        """Pull the USB cable: close both pty ends, so the host's next read or write fails."""
        self._shut_down(ignore_close_errors=False)

    # -- state access for tests and tools --------------------------------------------------------
    def get(self, motor_id: int, register: str) -> int:
        """Current value of a register (present values refreshed from physics)."""
        with self._lock:
            return self.firmware.get(motor_id, register)

    def set(self, motor_id: int, register: str, value: int) -> None:
        """Set a register directly (no access checks): factory state or a tampered EEPROM."""
        with self._lock:
            self.servos[motor_id].set(register, value)

    def advance_physics(self) -> None:
        """Bring the physics up to `clock()` now (after a test jumps a virtual clock)."""
        with self._lock:
            self.firmware.advance()

    def move_by_hand(self, motor_id: int, present_ticks: int) -> None:
        """Move a limp joint so that its Present_Position reads `present_ticks`."""
        with self._lock:
            self.firmware.move_by_hand(motor_id, present_ticks)

    def writes(self, register: str) -> list[tuple[float, int, int]]:
        """(t, id, value) of every write or sync write received that set `register`."""
        out = []
        for entry in list(self.wire_log):
            pkt = entry.packet
            if pkt is None:
                continue
            for motor_id, addr, data in write_targets(self.protocol, pkt):
                servo = self.servos.get(motor_id)
                if servo is None or register not in servo.model.table:
                    continue
                r = servo.reg(register)
                if addr <= r.address and r.address + r.size <= addr + len(data):
                    off = r.address - addr
                    value = self.protocol.decode_value(r, data[off : off + r.size])
                    out.append((entry.t, motor_id, value))
        return out

    # -- the serving thread ----------------------------------------------------------------------
    def _serve(self) -> None:
        parser = StreamParser(self.protocol, status=False)
        while self._running:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.01)
                if not ready:
                    with self._lock:
                        self.firmware.advance()  # keep physics current between packets
                    continue
                data = os.read(self._master, 4096)
            except OSError:
                break  # host closed or unplugged
            for ev in parser.feed(data):
                t = self.clock()
                if ev.outcome is not Outcome.OK:
                    self.wire_log.append(WireEntry(t, ev.raw, None))
                    continue  # a servo ignores a packet whose checksum fails
                self.wire_log.append(WireEntry(t, ev.raw, ev.packet))
                try:
                    with self._lock:
                        self.firmware.error_bits = self.faults.error_bits
                        replies = self.firmware.handle(ev.packet)
                    for reply in replies:
                        self._send(reply)
                except Exception as e:  # a bug here must not silently kill the bus: record it
                    log.exception("servo emulator failed on %s", ev.packet)
                    self.errors.append(f"{ev.packet}: {e!r}")

    def _send(self, reply: StatusPacket) -> None:
        f, rng = self.faults, self.rng
        applied: list[str] = []
        self.fault_log.append((reply.id, applied))
        if reply.id in f.dead_ids:
            applied.append("dead")
            return
        hit = f.only_ids is None or reply.id in f.only_ids
        if hit and f.drop and rng.random() < f.drop:
            applied.append("drop")
            return
        if hit and f.wrong_id and rng.random() < f.wrong_id:
            others = [i for i in range(1, 253) if i != reply.id]
            reply = dataclasses.replace(reply, id=rng.choice(others))
            applied.append("wrong_id")
        if hit and f.forge and reply.params and rng.random() < f.forge:
            reply = dataclasses.replace(reply, params=rng.randbytes(len(reply.params)))
            applied.append("forge")
        data = bytearray(self.protocol.encode_status(reply))
        if hit and f.corrupt and rng.random() < f.corrupt:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            applied.append("corrupt")
        if hit and f.truncate and rng.random() < f.truncate:
            data = data[: rng.randrange(1, len(data))]
            applied.append("truncate")
        if hit and f.garbage and rng.random() < f.garbage:
            data = bytearray(rng.randbytes(rng.randrange(1, 12))) + data
            applied.append("garbage")
        if hit and f.delay and rng.random() < f.delay:
            time.sleep(f.delay_s)
            applied.append("delay")
        try:
            if hit and f.split and rng.random() < f.split and len(data) > 1:
                cut = rng.randrange(1, len(data))
                os.write(self._master, data[:cut])
                time.sleep(0.0005)
                os.write(self._master, data[cut:])
                applied.append("split")
            else:
                os.write(self._master, data)
        except OSError:
            pass  # host gone

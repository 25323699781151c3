"""`MotorBus`: one serial bus of Dynamixel or Feetech servos, over pyserial.

What it guarantees:
- The port is opened exclusively (`flock`), so a second writer on the same arm fails at open with
  an error naming the port, instead of interleaving packets.
- Every transaction has a timeout derived from the baud rate and the bytes on the wire, plus a
  fixed latency allowance (USB latency timer, servo return delay, OS scheduling). If the adapter's
  `latency_timer` is readable in sysfs, the allowance is raised to cover it. While the replies
  of a sync read keep arriving, each next one gets the allowance again from the last, and a
  reply already waiting when the deadline passes is still read (the process may have been
  descheduled): a busy host delays replies, it does not lose them.
- Retries are bounded twice: by a count, and by a time budget (a share of the 33 ms tick), so a
  dead servo costs at most one budget per tick, not seconds.
- Every status packet's error byte is recorded (`last_errors`, `error_log`), sync reads included;
  nothing is silently dropped.
- Set-up and calibration, where time is cheap and a spurious failure is not, run inside
  `with bus.patient():`: each retry waits twice as long as the last (up to `PATIENT_WAIT_S`)
  until the budget is spent, so a reply that is late, not lost, still lands; a late reply is a
  busy host's (or an emulator's, sharing the host), not a dead servo's. The 30 Hz loop's reads
  and writes stay outside, on the tight budget.
- `connect()` pings every expected id and checks its model number, each for up to
  `HANDSHAKE_BUDGET_S` with growing waits; the bus itself never enables torque, and the
  handshake fails, naming the missing ids and wrong models, before anyone can.
- `disable_torque()` is confirmed by reading Torque_Enable back from every servo (growing waits,
  `TORQUE_OFF_BUDGET_S` in all) and returns the servos that did not read back 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import termios
import time
from collections.abc import Callable, Iterable

import serial

from hardware.motors import get_protocol
from hardware.motors.packets import Instruction, InstructionPacket, Outcome
from hardware.motors.parser import Reply, ReplyCollector
from hardware.motors.tables import MODEL_BY_NUMBER, ModelSpec, Register, get_model

log = logging.getLogger(__name__)


class MotorBusError(ConnectionError):
    """The port cannot be used (cannot open, unplugged, busy)."""


HANDSHAKE_BUDGET_S = 2.0  # seconds per servo to answer the connect-time ping
PATIENT_WAIT_S = 0.25  # longest single wait for a reply in a patient ping
PATIENT_BUDGET_S = 1.0  # default budget of each transaction inside `MotorBus.patient()`
TORQUE_OFF_BUDGET_S = 2.0  # seconds for torque off to be read back from every servo


class MotorNotFoundError(MotorBusError):
    """Expected servos did not answer the handshake, or are another model."""


class MotorCommError(MotorBusError):
    """A servo did not give a valid reply within the retries and the time budget."""


class MotorInstructionError(RuntimeError):
    """A servo answered, but refused the instruction (Dynamixel error number in the status)."""


@dataclasses.dataclass(frozen=True)
class Motor:
    """One servo on the bus: its id and LeRobot model key."""

    id: int
    model: str


@dataclasses.dataclass
class ReadResult:
    """Outcome of a (sync) read across motors.

    Attributes:
        values: motor name -> value, only for motors that replied OK.
        outcomes: motor name -> `Outcome` of the last attempt.
        errors: motor name -> status error byte, for motors whose reply carried one (nonzero).
        attempts: transactions used.
    """

    values: dict[str, int]
    outcomes: dict[str, Outcome]
    errors: dict[str, int]
    attempts: int

    @property
    def ok(self) -> bool:
        return all(o is Outcome.OK for o in self.outcomes.values())

    @property
    def failed(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o is not Outcome.OK]


def _sysfs_latency_timer_s(port: str) -> float | None:
    """FTDI/CH34x latency timer of a USB serial port, if the kernel exposes it."""
    name = os.path.basename(os.path.realpath(port))
    path = f"/sys/bus/usb-serial/devices/{name}/latency_timer"
    try:
        with open(path) as f:
            return int(f.read().strip()) / 1000.0
    except (OSError, ValueError):
        return None


class MotorBus:
    """A bus of servos of one protocol.

    Args:
        port: serial device path, e.g. `/dev/ttyACM0` or `/dev/serial/by-id/...`.
        motors: motor name -> `Motor`.
        protocol: `"dynamixel"` or `"feetech"`.
        baudrate: bits per second (1 Mbaud on both stock LeRobot arms).
        latency_s: fixed allowance per transaction on top of wire time.
        max_retries: extra attempts after a failed transaction.
        budget_s: default time budget for one call including retries.
        serial_factory: builds the port (tests may wrap it to spy on opens).
    """

    def __init__(
        self,
        port: str,
        motors: dict[str, Motor],
        protocol: str,
        baudrate: int = 1_000_000,
        latency_s: float = 0.004,
        max_retries: int = 2,
        budget_s: float = 0.015,
        serial_factory: Callable[..., serial.Serial] = serial.Serial,
    ):
        self.port, self.baudrate = port, int(baudrate)
        self.protocol = get_protocol(protocol)
        self.motors = dict(motors)
        self.models: dict[str, ModelSpec] = {n: get_model(m.model) for n, m in motors.items()}
        for name, model in self.models.items():
            if model.protocol != self.protocol.name:
                raise ValueError(f"motor {name!r}: {model.name} does not speak {protocol}")
        self._by_id = {m.id: n for n, m in motors.items()}
        if len(self._by_id) != len(motors):
            raise ValueError(f"duplicate motor ids on {port}: {motors}")
        self.latency_s, self.max_retries, self.budget_s = latency_s, max_retries, budget_s
        self._factory = serial_factory
        self._ser: serial.Serial | None = None
        self.last_errors: dict[str, int] = {}
        self.error_log: list[tuple[float, str, int, list[str]]] = []
        self.stats = {"transactions": 0, "retries": 0, "timeouts": 0, "corrupt": 0}
        self._patient_s: float | None = None  # set inside `patient()`

    def patient(self, budget_s: float = PATIENT_BUDGET_S):
        """A context inside which reads and writes retry with growing waits (each twice the
        last, up to `PATIENT_WAIT_S`) until their budget is spent: `budget_s`, or the one a call
        gives. For set-up and calibration; not for the control loop, whose tick cannot wait."""
        return self._patience(budget_s)

    @contextlib.contextmanager
    def _patience(self, budget_s: float | None):
        old, self._patient_s = self._patient_s, budget_s
        try:
            yield self
        finally:
            self._patient_s = old

    def _next_wait(self, wait: float | None, n_tx: int, n_rx: int, left: float) -> float:
        """A patient retry's wait: twice the last one (the default wait at first)."""
        return min(PATIENT_WAIT_S, left, 2 * (wait or self.timeout_for(n_tx, n_rx)))

    # -- connection -----------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._ser is not None and self._ser.is_open

    def connect(self, handshake: bool = True) -> None:
        """Open the port exclusively; with `handshake`, ping and model-check every motor."""
        if self.is_connected:
            raise MotorBusError(f"{self.port}: already connected")
        try:
            self._ser = self._factory(
                port=self.port,
                baudrate=self.baudrate,
                timeout=0,
                write_timeout=1.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as e:
            raise MotorBusError(
                f"could not open servo port {self.port}: {e}. Is another program using it, is the "
                "arm plugged in, and do you have permission (dialout group)?"
            ) from e
        timer = _sysfs_latency_timer_s(self.port)
        if timer is not None and self.latency_s < 2 * timer + 0.002:
            log.warning(
                "%s: USB latency_timer is %.0f ms; set it to 1 ms for a 30 Hz loop",
                self.port,
                timer * 1000,
            )
            self.latency_s = 2 * timer + 0.002
        if handshake:
            try:
                self.handshake()
            except BaseException:
                self.disconnect()
                raise

    def handshake(self) -> None:
        """Ping every expected motor and check its model; raise naming every problem."""
        missing, wrong = [], []
        for name, motor in self.motors.items():
            # Until 2 s have passed, each wait twice the last: paid in full only by a servo that
            # never answers. A count of retries would end after a few fast waits and fail on a
            # reply that is late because the host was busy (seen in CI on an emulator's first
            # reply, after 6 waits of 4 ms).
            number = self.ping(motor.id, budget_s=HANDSHAKE_BUDGET_S, patient=True)
            if number is None:
                missing.append(f"{name} (id {motor.id})")
                continue
            expected = self.models[name]
            if number != expected.number:
                found = MODEL_BY_NUMBER.get((self.protocol.name, number), f"model {number}")
                wrong.append(f"{name} (id {motor.id}): expected {expected.name}, found {found}")
        if missing or wrong:
            parts = []
            if missing:
                parts.append("no reply from " + ", ".join(missing))
            if wrong:
                parts.append("wrong model: " + "; ".join(wrong))
            raise MotorNotFoundError(
                f"servo handshake failed on {self.port} ({self.protocol.name}, {self.baudrate} "
                f"baud): {'; '.join(parts)}. Check cables, ids and baud rate."
            )

    def disconnect(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
            self._ser = None

    def __enter__(self) -> MotorBus:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    # -- transactions ---------------------------------------------------------------------------
    def timeout_for(self, n_tx: int, n_rx: int) -> float:
        """Seconds to wait for `n_rx` reply bytes after sending `n_tx` (10 bits per byte)."""
        return self.latency_s + 1.5 * (n_tx + n_rx) * 10.0 / self.baudrate

    def _require(self) -> serial.Serial:
        if self._ser is None:
            raise MotorBusError(f"{self.port}: not connected")
        return self._ser

    def _transact(
        self, packet: InstructionPacket, expected: dict[int, int], wait_s: float | None = None
    ) -> dict[int, Reply]:
        """Send one instruction and collect the replies of `expected` ids (id -> data bytes),
        waiting `wait_s` for them (default `timeout_for` the packet sizes)."""
        ser = self._require()
        data = self.protocol.encode_instruction(packet)
        n_rx = sum(self.protocol.status_size(n) for n in expected.values())
        self.stats["transactions"] += 1
        try:
            ser.reset_input_buffer()  # bytes left from an earlier late reply are not ours
            ser.write(data)
            if not expected:
                return {}
            wait = self.timeout_for(len(data), n_rx) if wait_s is None else wait_s
            deadline = time.monotonic() + wait
            collector = ReplyCollector(self.protocol, expected)
            fd = ser.fileno()
            while not collector.done:
                # Past the deadline, one last look without waiting: if this process was not
                # scheduled until after it, a reply that came in time is already here.
                left = max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([fd], [], [], left)
                if ready:
                    before = len(collector.replies)
                    collector.feed(ser.read(max(1, ser.in_waiting)))
                    if len(collector.replies) > before:
                        # Servos answer a sync read one after another: while replies keep
                        # coming, the next one gets the fixed allowance from the last one, so
                        # a stall between two replies is not read as a dead servo.
                        deadline = max(deadline, time.monotonic() + self.latency_s)
                elif left == 0.0:
                    break
        except (serial.SerialException, OSError, termios.error) as e:
            raise MotorBusError(f"servo port {self.port} failed: {e} (unplugged?)") from e
        results = collector.results()
        for motor_id, reply in results.items():
            name = self._by_id.get(motor_id, f"id {motor_id}")
            if reply.outcome is Outcome.OK:
                self._note_error(name, reply.packet.error)
            else:
                self.stats["timeouts" if reply.outcome is Outcome.TIMEOUT else "corrupt"] += 1
        return results

    def _note_error(self, name: str, error: int) -> None:
        previous = self.last_errors.get(name, 0)
        self.last_errors[name] = error
        if error:
            names = self.protocol.error_names(error)
            self.error_log.append((time.monotonic(), name, error, names))
            if error != previous:
                log.warning("%s: motor %s reports %s", self.port, name, ", ".join(names))

    def _name(self, motor: str) -> Motor:
        try:
            return self.motors[motor]
        except KeyError:
            raise KeyError(
                f"no motor {motor!r} on {self.port}; known: {list(self.motors)}"
            ) from None

    # -- single-motor operations ----------------------------------------------------------------
    def ping(
        self, motor_id: int, budget_s: float | None = None, patient: bool = False
    ) -> int | None:
        """Model number of the servo `motor_id`, or None if it does not answer.

        By default this retries like any read (`max_retries`, within `budget_s`). `patient`
        keeps trying until `budget_s` is spent, doubling the wait for the reply each time (up to
        `PATIENT_WAIT_S`), for the connect-time handshake, where time is cheap and a spurious
        "no reply" is not."""
        deadline = time.monotonic() + (budget_s or self.budget_s)
        n = self.protocol.ping_reply_size()
        packet = self.protocol.ping(motor_id)
        wait = None  # the default wait first
        attempt = 0
        while True:
            if attempt:
                self.stats["retries"] += 1
            reply = self._transact(packet, {motor_id: n}, wait)[motor_id]
            if reply.outcome is Outcome.OK:
                if n:
                    return int.from_bytes(reply.packet.params[:2], "little")
                model_reg = next(iter(self.models.values())).register("Model_Number")
                r = self._transact(
                    self.protocol.read(motor_id, model_reg.address, model_reg.size),
                    {motor_id: model_reg.size},
                    wait,
                )[motor_id]
                if r.outcome is Outcome.OK:
                    return self.protocol.decode_value(model_reg, r.packet.params)
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0 or (not patient and attempt > self.max_retries):
                return None
            if patient:
                last = wait or self.timeout_for(len(self.protocol.encode_instruction(packet)), n)
                wait = min(PATIENT_WAIT_S, left, 2 * last)

    def read(self, register: str, motor: str, budget_s: float | None = None) -> int:
        """Read one register of one motor; raise `MotorCommError` naming it on failure."""
        result = self.sync_read(register, [motor], budget_s=budget_s, use_sync=False)
        if not result.ok:
            raise MotorCommError(
                f"{self.port}: reading {register} from motor {motor} (id {self.motors[motor].id})"
                f" failed: {result.outcomes[motor].value} after {result.attempts} attempt(s)"
            )
        return result.values[motor]

    def write(
        self,
        register: str,
        motor: str,
        value: int,
        budget_s: float | None = None,
        retries: int | None = None,
    ) -> None:
        """Write one register of one motor and check its status reply."""
        m = self._name(motor)
        reg = self.models[motor].register(register)
        packet = self.protocol.write(m.id, reg.address, self.protocol.encode_value(reg, value))
        patient = self._patient_s is not None
        deadline = time.monotonic() + (budget_s or self._patient_s or self.budget_s)
        tries = 1 + (self.max_retries if retries is None else retries)
        n_tx, n_rx = len(self.protocol.encode_instruction(packet)), self.protocol.status_size(0)
        wait, attempt = None, 0
        while True:
            if attempt:
                self.stats["retries"] += 1
            reply = self._transact(packet, {m.id: 0}, wait)[m.id]
            attempt += 1
            left = deadline - time.monotonic()
            if reply.outcome is Outcome.OK or left <= 0 or (not patient and attempt >= tries):
                break
            if patient:
                wait = self._next_wait(wait, n_tx, n_rx, left)
        if reply.outcome is not Outcome.OK:
            raise MotorCommError(
                f"{self.port}: writing {register}={value} to motor {motor} (id {m.id}) failed: "
                f"{reply.outcome.value}"
            )
        if self.protocol.name == "dynamixel" and reply.packet.error & 0x7F:
            raise MotorInstructionError(
                f"{self.port}: motor {motor} (id {m.id}) refused {register}={value}: "
                f"{', '.join(self.protocol.error_names(reply.packet.error & 0x7F))}"
            )

    def read_span(
        self, motor: str, registers: list[str], budget_s: float | None = None
    ) -> tuple[dict[str, int], int] | None:
        """Read several registers of one motor in a single READ covering all of them.

        Returns (register -> value, status error byte), or None if the motor did not reply.
        Never raises for a missing reply: the round-robin health read in a 30 Hz loop uses it.
        """
        m, model = self._name(motor), self.models[motor]
        regs = [model.register(r) for r in registers]
        start = min(r.address for r in regs)
        size = max(r.address + r.size for r in regs) - start
        deadline = time.monotonic() + (budget_s or self.budget_s)
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
            reply = self._transact(self.protocol.read(m.id, start, size), {m.id: size})[m.id]
            if reply.outcome is Outcome.OK:
                data = reply.packet.params
                values = {
                    r.name: self.protocol.decode_value(r, data[r.address - start :]) for r in regs
                }
                return values, reply.packet.error
            if time.monotonic() >= deadline:
                break
        return None

    def reboot(self, motor: str) -> None:
        """Dynamixel REBOOT: clears a hardware error shutdown (torque comes back off)."""
        if self.protocol.name != "dynamixel":
            raise MotorInstructionError(f"{self.port}: {self.protocol.name} servos have no REBOOT")
        m = self._name(motor)
        reply = self._transact(InstructionPacket(m.id, Instruction.REBOOT), {m.id: 0})[m.id]
        if reply.outcome is not Outcome.OK:
            raise MotorCommError(
                f"{self.port}: reboot of motor {motor} (id {m.id}) failed: {reply.outcome.value}"
            )

    # -- group operations -----------------------------------------------------------------------
    def sync_read(
        self,
        register: str,
        motors: Iterable[str] | None = None,
        budget_s: float | None = None,
        use_sync: bool = True,
    ) -> ReadResult:
        """Read `register` from several motors; never raises for a missing reply.

        Motors that fail are retried (only those) while the budget lasts. Check `.ok`/`.failed`.
        With `use_sync=False` (or one motor) plain READ instructions are used, one motor at a time.
        """
        names = list(motors) if motors is not None else list(self.motors)
        if not names:
            return ReadResult({}, {}, {}, 0)
        for n in names:
            self._name(n)  # a clear KeyError for an unknown motor
        regs = {n: self.models[n].register(register) for n in names}
        reg: Register = regs[names[0]]
        patient = self._patient_s is not None
        deadline = time.monotonic() + (budget_s or self._patient_s or self.budget_s)
        values: dict[str, int] = {}
        errors: dict[str, int] = {}
        outcomes = {n: Outcome.TIMEOUT for n in names}
        todo, attempts, wait = list(names), 0, None
        while todo and (patient or attempts <= self.max_retries):
            ids = [self.motors[n].id for n in todo]
            if use_sync and len(ids) > 1:
                packet = self.protocol.sync_read(reg.address, reg.size, ids)
            else:
                packet = self.protocol.read(ids[0], reg.address, reg.size)
                ids = ids[:1]
            attempts += 1
            if attempts > 1:
                self.stats["retries"] += 1
            results = self._transact(packet, {i: reg.size for i in ids}, wait)
            for motor_id, reply in results.items():
                name = self._by_id[motor_id]
                outcomes[name] = reply.outcome
                if reply.outcome is Outcome.OK:
                    values[name] = self.protocol.decode_value(regs[name], reply.packet.params)
                    if reply.packet.error:
                        errors[name] = reply.packet.error
            todo = [n for n in names if outcomes[n] is not Outcome.OK]
            # Retry only if one more full attempt for the missing motors fits in the budget.
            n_tx = len(self.protocol.encode_instruction(packet))
            n_rx = len(todo) * self.protocol.status_size(reg.size)
            left = deadline - time.monotonic()
            if patient:
                if left <= 0:
                    break
                wait = self._next_wait(wait, n_tx, n_rx, left)
            elif self.timeout_for(n_tx, n_rx) > left:
                break
        return ReadResult(values, outcomes, errors, attempts)

    def sync_write(self, register: str, values: dict[str, int]) -> None:
        """Write `register` on several motors in one broadcast packet (servos do not reply)."""
        if not values:
            return
        reg = self.models[next(iter(values))].register(register)
        data = {
            self._name(n).id: self.protocol.encode_value(self.models[n].register(register), v)
            for n, v in values.items()
        }
        self._transact(self.protocol.sync_write(reg.address, reg.size, data), {})

    def read_all(self, register: str, budget_s: float | None = None) -> dict[str, int]:
        """Read `register` from every motor, raising `MotorCommError` naming any that fail.
        The budget: `budget_s`, else `patient()`'s, else 0.1 s."""
        result = self.sync_read(register, budget_s=budget_s or self._patient_s or 0.1)
        if not result.ok:
            bad = ", ".join(
                f"{n} (id {self.motors[n].id}): {result.outcomes[n].value}" for n in result.failed
            )
            raise MotorCommError(f"{self.port}: reading {register} failed for {bad}")
        return result.values

    # -- torque ---------------------------------------------------------------------------------
    def enable_torque(self, motors: Iterable[str] | None = None) -> None:
        """Torque on, checked per motor (Feetech: then lock the EEPROM, as LeRobot does)."""
        for name in motors if motors is not None else self.motors:
            self.write("Torque_Enable", name, 1, budget_s=0.25, retries=max(5, self.max_retries))
            if self.protocol.name == "feetech":
                self.write("Lock", name, 1, budget_s=0.25, retries=max(5, self.max_retries))

    def disable_torque(
        self, motors: Iterable[str] | None = None, budget_s: float = TORQUE_OFF_BUDGET_S
    ) -> list[str]:
        """Torque off, confirmed by reading Torque_Enable back from every servo.

        A broadcast first (it reaches every live servo at once), then each servo's Torque_Enable
        is read back. A servo that still reads 1 is written 0 again; one whose reply did not
        come is asked again, each wait twice the last (up to `PATIENT_WAIT_S`), until every servo
        reads 0 or `budget_s` is spent: at shutdown time is cheap, and a servo reported as still
        energised must be one that really did not answer. Feetech: then the EEPROM is unlocked.

        Returns:
          The motors (bus order) that did not read back 0: nobody may say their torque is off.
          Never raises for them; `MotorBusError` if the port itself fails.
        """
        with self._patience(None):  # its own growing waits, whoever calls it
            return self._disable_torque(motors, budget_s)

    def _disable_torque(self, motors: Iterable[str] | None, budget_s: float) -> list[str]:
        names = list(motors) if motors is not None else list(self.motors)
        self.sync_write("Torque_Enable", {n: 0 for n in names})
        deadline = time.monotonic() + budget_s
        unconfirmed, wait = names, None
        while True:
            values = {n: self._read_once(n, "Torque_Enable", wait) for n in unconfirmed}
            for name, value in values.items():
                if value:  # still on: it missed the broadcast; the next read-back decides
                    with contextlib.suppress(MotorCommError, MotorInstructionError):
                        self.write("Torque_Enable", name, 0, retries=0)
            unconfirmed = [n for n, v in values.items() if v != 0]  # None: no reply
            left = deadline - time.monotonic()
            if not unconfirmed or left <= 0:
                break
            self.stats["retries"] += 1
            wait = min(PATIENT_WAIT_S, left, 2 * (wait or self.latency_s))
        if self.protocol.name == "feetech":
            locked = []
            for name in (n for n in names if n not in unconfirmed):
                try:
                    self.write("Lock", name, 0, budget_s=0.05, retries=3)
                except (MotorCommError, MotorInstructionError):
                    locked.append(self.label(name))
            if locked:
                log.warning(
                    "%s: EEPROM lock not confirmed open on %s (torque is off)",
                    self.port,
                    ", ".join(locked),
                )
        return unconfirmed

    def _read_once(self, motor: str, register: str, wait_s: float | None) -> int | None:
        """One READ of `register` from `motor`: the value, or None without a valid reply."""
        m, reg = self._name(motor), self.models[motor].register(register)
        packet = self.protocol.read(m.id, reg.address, reg.size)
        reply = self._transact(packet, {m.id: reg.size}, wait_s)[m.id]
        if reply.outcome is not Outcome.OK:
            return None
        return self.protocol.decode_value(reg, reply.packet.params)

    def label(self, motor: str) -> str:
        """How messages name a motor: `"elbow_flex (id 3)"`."""
        return f"{motor} (id {self.motors[motor].id})"

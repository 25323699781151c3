"""Calling the vendors' SDKs (`dynamixel_sdk`, `scservo_sdk`) over an emulated line, robustly
under CPU load.

Both SDKs wait a fixed ~34 ms for a reply (`LATENCY_TIMER * 2 + 2` ms) and never discard input
before sending. On a loaded machine the emulator (a thread, or another process) can answer after
that, and the late reply then sits in the port until the next call reads it as its own: the
Feetech ping reads Model_Number next, gets the stale 0-byte ping reply for the same id, and
indexes into its empty data (the IndexError once seen in test_feetech_sdk_against_emulator).

`SdkLine.call` therefore retries a timed-out or corrupt call only after `settle`: it sends a
*barrier*, a READ of `BARRIER_SIZE` bytes that no test asks for, and reads (with our parser)
everything up to that barrier's reply. An emulator answers in order, so when the barrier's reply
has come, every late reply before it has come too and has been consumed: the next SDK call
starts on a clean line. Nothing waits on a timer; the deadline only bounds a broken emulator.
"""

from __future__ import annotations

import time

from hardware.motors import get_protocol
from hardware.motors.packets import Outcome
from hardware.motors.parser import StreamParser

BARRIER_ADDRESS, BARRIER_SIZE = 0, 5  # Model_Number onwards: exists on every servo
SETTLE_DEADLINE_S = 60.0  # a failure bound for a dead line, not a measurement
ATTEMPTS = 5


class SdkLine:
    """One SDK `PortHandler` on an emulated line.

    Args:
        sdk: the imported SDK module (for its COMM_* codes).
        handler: the SDK's opened `PortHandler` (its pyserial port is `handler.ser`).
        protocol: "dynamixel" or "feetech".
        barrier_id: a servo id that answers (the barrier's addressee).
    """

    def __init__(self, sdk, handler, protocol: str, barrier_id: int):
        self.sdk, self.handler, self.barrier_id = sdk, handler, barrier_id
        self.protocol = get_protocol(protocol)
        self.settles = 0

    def failed(self, result) -> bool:
        codes = result if isinstance(result, tuple) else (result,)
        return any(c in (self.sdk.COMM_RX_TIMEOUT, self.sdk.COMM_RX_CORRUPT) for c in codes)

    def settle(self) -> None:
        """Consume every reply still on its way, up to and including a barrier's."""
        self.settles += 1
        ser = self.handler.ser
        request = self.protocol.read(self.barrier_id, BARRIER_ADDRESS, BARRIER_SIZE)
        ser.write(self.protocol.encode_instruction(request))
        parser = StreamParser(self.protocol, status=True)
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        timeout, ser.timeout = ser.timeout, 0.1  # the SDK reads non-blocking: block here instead
        try:
            while time.monotonic() < deadline:
                for ev in parser.feed(ser.read(max(1, ser.in_waiting))):
                    packet = ev.packet
                    if (
                        ev.outcome is Outcome.OK
                        and packet.id == self.barrier_id
                        and len(packet.params) == BARRIER_SIZE
                    ):
                        return
        finally:
            ser.timeout = timeout
        raise AssertionError(f"no reply to the barrier read within {SETTLE_DEADLINE_S:.0f} s")

    def call(self, fn, *args, done=None):
        """`fn(*args)`, retried after `settle` while it times out or reads a corrupt reply (or
        while `done(result)` is false); returns the last result."""
        for attempt in range(ATTEMPTS):
            if attempt:
                self.settle()
            result = fn(*args)
            if not self.failed(result) and (done is None or done(result)):
                return result
        return result

    def sync(self) -> None:
        """After an instruction with no reply (a sync write): once the barrier is answered, the
        emulator has applied it."""
        self.settle()

"""`python -m hardware.motors.emulate --robot so101 [--faults ...]`: the spelling issue 11 gave
for the standalone servo emulator, kept working; the command is `python -m hardware.emulation`
(`hardware.emulation.serve`, where its options are documented).

This module only hands the command line over, by replacing this process with that command
(`os.execv`): `hardware.motors` is the driver layer and imports nothing above it (DESIGN.md,
tests/test_import_graph.py), while the emulator sits over the arm profiles. Signals, the port
line and the exit status are the real command's, since it is the same process.
"""

import os
import sys

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "hardware.emulation", *sys.argv[1:]])

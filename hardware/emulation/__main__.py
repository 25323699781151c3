"""`python -m hardware.emulation --robot so101 [--faults ...]`: see `hardware.emulation.serve`."""

import sys

from hardware.emulation.serve import main

sys.exit(main())

"""`python -m hardware.video EPISODE --out ep.mp4`: an episode's cameras side by side as an MP4.

The command line of `hardware.recording.video` (which also writes rollout videos for
`act_jax.evaluate`), kept at this name so that `python -m hardware.video` stays the command.
"""

import sys

from hardware.recording.video import main

if __name__ == "__main__":
    sys.exit(main())

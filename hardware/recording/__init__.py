"""Recording demonstrations: the episode format, the recorder, the teleoperation rig, videos.

    episodes.py    the episode format: one .npz per episode (the contract with `datasets/`)
    recorder.py    record(robot, teleop, out_dir, episodes): through the control loop, resumable
    teleop_rig.py  leader -> follower teleoperation (real or emulated) between and in episodes
    video.py       MP4 videos of episodes and rollouts

This package imports nothing on purpose: `datasets/` imports `hardware.recording.episodes` and
must not pull in the recorder, the arms or the sim with it. The command line is
`python -m hardware.record`.
"""

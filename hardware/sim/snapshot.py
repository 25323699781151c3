"""Writes the sim scene's MJCF, or a picture of both cameras at a reset.

    python -m hardware.sim.snapshot --out scene.xml          # for MuJoCo's viewer
    python -m hardware.sim.snapshot --snapshot scene.png --seed 3

A command apart from `hardware.sim.scene`: the picture needs `SimRobot`, which imports the scene.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from hardware.sim.robot import SimRobot
from hardware.sim.scene import build_scene_xml


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Write the sim scene's MJCF, or a picture of both cameras at a reset."
    )
    p.add_argument("--out", default=None, help="path of the .xml to write")
    p.add_argument("--snapshot", default=None, help="path of a .png of top | lateral")
    p.add_argument("--seed", type=int, default=0, help="reset seed for --snapshot")
    args = p.parse_args(argv)
    if not (args.out or args.snapshot):
        p.error("nothing to do: give --out and/or --snapshot")
    if args.out:
        with open(args.out, "w") as f:
            f.write(build_scene_xml())
        print(f"wrote {args.out}")
    if args.snapshot:
        with SimRobot() as robot:
            images = robot.reset(seed=args.seed)["images"]
        cv2.imwrite(args.snapshot, np.concatenate(list(images.values()), axis=1)[..., ::-1])
        print(f"wrote {args.snapshot}")


if __name__ == "__main__":
    main()

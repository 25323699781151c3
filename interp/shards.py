"""On-disk activation shards: a writer with a bounded buffer and a memory-mapped reader.

`interp.collect` streams frames through a network and hands each batch to a `ShardWriter`; the
probes read them back through `Collection`. Layout of a collection directory:

    <out>/manifest.json                   written last: a directory without it is incomplete
    <out>/shards/<k:05d>/features/<name>.npy    (n_k, ...) float32, one file per intermediate
    <out>/shards/<k:05d>/labels/<field>.npy     (n_k, ...) one file per label field
    <out>/pca/<name>.npz                  mean (D,), components (K, D), explained_variance (K,)

`<name>` is the intermediate's name with "/" written as "__" (`backbone/top` ->
`backbone__top.npy`). Shard k holds frames `offsets[k] .. offsets[k + 1] - 1` of the collection,
in dataset order (episode by episode, frame by frame). The manifest records, per name, the
per-frame shape, the reduction applied (raw, pooled, PCA) and, per label, its shape and meaning.

Memory: the writer holds at most `shard_frames + batch` frames (it flushes as soon as a shard is
full; `peak_buffered` records the most it ever held). The reader memory-maps every shard
(`np.load(mmap_mode="r")`), so opening a collection reads only the manifest; `features(name)`
concatenates, and is what a probe that needs the whole matrix in memory calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FORMAT = "act_jax.interp.collect/1"
MANIFEST = "manifest.json"


def file_name(name: str) -> str:
    """Intermediate name -> file stem (`decoder/layer_0/out` -> `decoder__layer_0__out`)."""
    return name.replace("/", "__")


class ShardWriter:
    """Buffers per-frame arrays and writes a shard every `shard_frames` frames.

    Args:
        out_dir: the collection directory (created; must not hold a manifest already).
        shard_frames: frames per shard (the last shard may be shorter).
    """

    def __init__(self, out_dir: str | os.PathLike, shard_frames: int):
        if shard_frames < 1:
            raise ValueError(f"shard_frames must be >= 1, got {shard_frames}")
        self.out_dir = Path(out_dir)
        if (self.out_dir / MANIFEST).exists():
            raise FileExistsError(
                f"{self.out_dir} already holds a collection ({MANIFEST}); "
                "choose an empty --out directory"
            )
        self.shard_frames = shard_frames
        self._features: dict[str, list[np.ndarray]] = {}
        self._labels: dict[str, list[np.ndarray]] = {}
        self._buffered = 0
        self.peak_buffered = 0
        self.offsets = [0]
        self.shapes: dict[str, dict[str, tuple]] = {"features": {}, "labels": {}}

    def add(self, features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> None:
        """Appends a batch: every array has the same leading (frame) axis."""
        sizes = {len(v) for v in (*features.values(), *labels.values())}
        if len(sizes) != 1:
            raise ValueError(f"a batch's arrays disagree on the number of frames: {sizes}")
        for kind, store, arrays in (
            ("features", self._features, features),
            ("labels", self._labels, labels),
        ):
            for k, v in arrays.items():
                store.setdefault(k, []).append(np.asarray(v))
                shape = self.shapes[kind].setdefault(k, tuple(v.shape[1:]))
                if shape != tuple(v.shape[1:]):
                    raise ValueError(f"{kind} {k!r}: per-frame shape {v.shape[1:]} after {shape}")
        self._buffered += sizes.pop()
        self.peak_buffered = max(self.peak_buffered, self._buffered)
        while self._buffered >= self.shard_frames:
            self._flush(self.shard_frames)

    def _flush(self, n: int) -> None:
        shard = self.out_dir / "shards" / f"{len(self.offsets) - 1:05d}"
        for kind, store in (("features", self._features), ("labels", self._labels)):
            (shard / kind).mkdir(parents=True, exist_ok=True)
            for k, parts in store.items():
                whole = np.concatenate(parts) if len(parts) > 1 else parts[0]
                np.save(shard / kind / f"{file_name(k)}.npy", whole[:n])
                store[k] = [whole[n:]] if len(whole) > n else []
        self._buffered -= n
        self.offsets.append(self.offsets[-1] + n)

    def close(self, manifest: dict) -> dict:
        """Writes the last partial shard and the manifest (atomically). Returns the manifest."""
        if self._buffered:
            self._flush(self._buffered)
        manifest = dict(
            manifest,
            format=FORMAT,
            frames=self.offsets[-1],
            offsets=self.offsets,
            peak_buffered_frames=self.peak_buffered,
            shard_frames=self.shard_frames,
        )
        for kind in ("features", "labels"):
            entries = manifest.setdefault(kind, {})
            for k, shape in self.shapes[kind].items():
                entries.setdefault(k, {})["shape"] = list(shape)
        tmp = self.out_dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.out_dir / MANIFEST)
        return manifest


class Collection:
    """Read access to a collection directory written by `interp.collect`.

    Attributes:
        manifest: the parsed manifest.json.
        names: the intermediate names collected; `label_fields`: the label fields.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        path = self.out_dir / MANIFEST
        if not path.exists():
            raise FileNotFoundError(
                f"no {MANIFEST} in {self.out_dir}: not a finished collection "
                "(run `python -m interp.collect`)"
            )
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self.names = tuple(self.manifest["features"])
        self.label_fields = tuple(self.manifest["labels"])

    def __len__(self) -> int:
        return int(self.manifest["frames"])

    @property
    def num_shards(self) -> int:
        return len(self.manifest["offsets"]) - 1

    def _shard(self, k: int, kind: str, key: str) -> np.ndarray:
        return np.load(
            self.out_dir / "shards" / f"{k:05d}" / kind / f"{file_name(key)}.npy", mmap_mode="r"
        )

    def shards(self, name: str, kind: str = "features") -> list[np.ndarray]:
        """The memory-mapped per-shard arrays of one feature `name` (or label, kind="labels")."""
        valid = self.names if kind == "features" else self.label_fields
        if name not in valid:
            raise KeyError(
                f"{self.out_dir} has no {kind[:-1]} {name!r}; it has: " + ", ".join(valid)
            )
        return [self._shard(k, kind, name) for k in range(self.num_shards)]

    def features(self, name: str) -> np.ndarray:
        """(frames, ...) float32: every shard of `name`, concatenated in memory."""
        return np.concatenate(self.shards(name))

    def labels(self, field: str) -> np.ndarray:
        """(frames, ...) one label field, concatenated in memory."""
        return np.concatenate(self.shards(field, "labels"))

    def pca(self, name: str) -> dict[str, np.ndarray] | None:
        """The PCA `name` was reduced with ({mean, components, explained_variance}), or None."""
        path = self.out_dir / "pca" / f"{file_name(name)}.npz"
        if not path.exists():
            return None
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

r"""Labelled activations: stream a dataset through a network and write named intermediates to disk.

    python -m interp.collect --checkpoint runs/sim_default --names backbone/top \
        backbone/lateral decoder/out --pool --out /tmp/acts
    python -m interp.collect --checkpoint runs/sim_default --random-init 0 ... --out /tmp/rand

Episodes of any `act_episodes` dataset (default: the checkpoint's own) are read one at a time
(frames stay PNG until their batch is decoded) and run through the network in fixed-size
batches with `act_jax.intermediates.run_with_cache`; states are normalised with the checkpoint's
statistics exactly as `act_jax.policy.Policy` does. Features and labels go to shards on disk
(`interp.shards` documents the layout); at most one shard plus one batch is ever held.

Reductions (per name, recorded in the manifest):
    --pool    mean over the token axis: `backbone/<cam>` (B, h, w, C) -> (B, C), one camera per
              name; encoder token streams (B, N, D) -> (B, 2 + cameras, D) as [latent, state,
              mean of each camera's pixel tokens]; decoder streams (B, C, X) -> (B, X), the mean
              over the chunk queries. Attention weights and `actions` have no pooling rule.
    --pca K   after pooling (if any), project each name on its top K principal components. The
              PCA is fitted on a first pass over every `--pca-stride`-th frame of each episode
              (the frames t = 0, s, 2s, ...) and stored in `pca/<name>.npz`. That pass holds
              its frames' features in memory (frames / s rows per name, before projection).

Labels per frame are those of `interp.labels` (episode, frame, location id, the cube's start
pose, arm state, task phase, ground-truth chunk), plus `pred_actions`, the network's chunk in
dataset units.

A randomly initialised network of the same architecture (`--random-init SEED`) keeps the
checkpoint's config and normalisation and draws fresh weights the way `act_jax.train` does: the
seed `config.train.seed` reproduces the trained network's own initial weights (to float
rounding: `init_variables` compiles without XLA's optimisations).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from act_jax import intermediates as im
from act_jax.data import PngFrames, png_source, read_example
from act_jax.normalization import NormStats
from interp.batches import padded, take
from interp.labels import LABELS, PHASES, episode_labels
from interp.shards import ShardWriter, file_name
from interp.tokens import TokenIndex

_ENCODER_TOKENS = re.compile(r"^encoder/(input_tokens|out|layer_\d+/out)$")
_DECODER_STREAM = re.compile(r"^decoder/(out|layer_\d+/(mlp_in|mlp_hidden|mlp_out|out))$")


@dataclasses.dataclass(frozen=True)
class Network:
    """A network to collect from: module, weights, experiment config, normalisation, origin."""

    model: Any
    variables: Mapping
    config: Any
    norm_stats: NormStats
    origin: dict


def load_network(checkpoint: str | Path, *, random_init_seed: int | None = None) -> Network:
    """The checkpoint's network, or with `random_init_seed` one of the same architecture with
    fresh weights (and the checkpoint's config and normalisation statistics)."""
    from act_jax import checkpoints
    from act_jax.model import ACT, ACTConfig, init_variables

    origin: dict[str, Any] = {"checkpoint": str(Path(checkpoint).absolute())}
    if random_init_seed is None:
        model, variables, config, norm_stats = checkpoints.load_policy_params(checkpoint)
        ckpt = checkpoints.Checkpointer(checkpoint, read_only=True)
        origin["step"] = ckpt.latest_step()
        ckpt.close()
        return Network(model, variables, config, norm_stats, origin)
    ckpt = checkpoints.Checkpointer(checkpoint, read_only=True)
    config, norm_stats, step = ckpt.restore_metadata()
    ckpt.close()
    model = ACT(ACTConfig.from_config(config.model))
    # The key derivation of act_jax.train: key(seed) -> (init, step); init -> (params, ...).
    init_key = jax.random.split(jax.random.key(int(random_init_seed)))[0]
    variables = init_variables(model, jax.random.split(init_key, 3)[0])
    origin.update(step=step, random_init_seed=int(random_init_seed))
    return Network(model, variables, config, norm_stats, origin)


def iter_batches(
    source,
    cameras: Sequence[str],
    image_size: Sequence[int],
    chunk_size: int,
    batch_size: int,
    *,
    frame_stride: int = 1,
    max_episodes: int | None = None,
    where: str = "dataset",
    progress: bool = True,
) -> Iterator[dict]:
    """Yields {"images": {cam: (b, H, W, 3) uint8}, "labels": {field: (b, ...)}}, b <= batch_size.

    Reads episode `source[i]` (an `act_episodes` random-access source with PNG frames) only when
    the previous one is used up; frames are decoded per batch. Every `frame_stride`-th frame.
    """
    n = len(source) if max_episodes is None else min(max_episodes, len(source))
    shape = (int(image_size[0]), int(image_size[1]), 3)
    pending: list[tuple[dict, dict, int]] = []
    for pos in tqdm(range(n), desc="collect", unit="ep", disable=not progress):
        ex = read_example(source, pos, where)
        obs = ex["observation"]
        missing = [c for c in cameras if c not in obs]
        if missing:
            raise ValueError(
                f"{where}, episode {pos}: no camera(s) {missing}; it has "
                f"{sorted(k for k in obs if k != 'state')}"
            )
        frames = {
            c: PngFrames(obs[c], shape, f"{where}, episode {pos}, camera {c!r}") for c in cameras
        }
        labels = episode_labels(ex, pos, chunk_size)
        for t in range(0, len(labels["frame"]), frame_stride):
            pending.append((frames, labels, t))
            if len(pending) == batch_size:
                yield _assemble(pending, cameras)
                pending = []
    if pending:
        yield _assemble(pending, cameras)


def _assemble(pending, cameras) -> dict:
    images = {c: np.stack([f[c][t] for f, _, t in pending]) for c in cameras}
    fields = pending[0][1].keys()
    return {
        "images": images,
        "labels": {k: np.stack([lab[k][t] for _, lab, t in pending]) for k in fields},
    }


def pool(name: str, value: np.ndarray, tokens: TokenIndex) -> np.ndarray:
    """Mean over the token axis of one captured intermediate (rules in the module docstring)."""
    value = np.asarray(value, np.float32)
    if name.startswith("backbone/"):
        return value.mean(axis=(1, 2))  # (B, h, w, C) -> (B, C)
    if _ENCODER_TOKENS.match(name):
        groups = [value[:, tokens.latent], value[:, tokens.state]]
        groups += [value[:, tokens.camera(c)].mean(axis=1) for c in tokens.cameras]
        return np.stack(groups, axis=1)  # (B, 2 + cameras, D)
    if _DECODER_STREAM.match(name):
        return value.mean(axis=1)  # (B, C, X) -> (B, X)
    raise ValueError(
        f"no pooling rule for {name!r}: --pool applies to backbone/<camera>, "
        "encoder token streams and decoder streams (not attention weights or "
        "actions); collect it in a separate run without --pool"
    )


def fit_pca(x: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """PCA of (n, D) rows: {"mean": (D,), "components": (k, D), "explained_variance": (k,)}."""
    x = np.asarray(x, np.float64)
    if k > min(x.shape):
        raise ValueError(
            f"PCA to {k} components needs at least {k} frames and {k} features; "
            f"the fitting pass has {x.shape[0]} frames of {x.shape[1]} features "
            "(lower --pca or --pca-stride)"
        )
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return {
        "mean": mean.astype(np.float32),
        "components": vt[:k].astype(np.float32),
        "explained_variance": (s[:k] ** 2 / max(1, len(x) - 1)).astype(np.float32),
    }


def check_names(
    network: Network, names: Sequence[str], *, pooled: bool | Sequence[str]
) -> tuple[str, ...]:
    """The requested names, validated before any work: unknown names (KeyError listing the valid
    ones) and pooled names without a pooling rule (ValueError) fail here. `pooled`: True for
    every name, or the names to pool."""
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of intermediate names, got {names!r}")
    shapes = im.expected(network.model.config, 1)
    unknown = [n for n in names if n not in shapes]
    if unknown:
        raise KeyError(
            f"unknown intermediate name(s) {unknown}; valid names for this model: "
            + ", ".join(sorted(shapes))
        )
    to_pool = names if pooled is True else [n for n in (pooled or ()) if n]
    stray = [n for n in to_pool if n not in names]
    if stray:
        raise ValueError(f"pooled names {stray} are not among the collected names {list(names)}")
    tokens = TokenIndex.for_config(network.model.config)
    for n in to_pool:
        pool(n, np.zeros(shapes[n], np.float32), tokens)
    return tuple(dict.fromkeys(names))


def model_inputs(network: Network, images: Mapping, state: np.ndarray) -> dict:
    """{"images", "state"} as the network takes them: the state (B, S) in dataset units is
    normalised with the checkpoint's statistics exactly as `act_jax.policy.Policy` does."""
    state = network.norm_stats.normalize_state(np.asarray(state)).astype(np.float32)
    return {"images": dict(images), "state": state}


def _runner(network: Network, names: tuple[str, ...], batch_size: int):
    """batch -> ({name: (b, ...) numpy}, (b, C, A) predicted chunk in dataset units)."""
    capture = tuple(sorted(set(names) | {"actions"}))
    stats = network.norm_stats

    def run(batch: dict):
        n = len(batch["labels"]["frame"])
        rows, _ = next(padded(n, batch_size))  # pad to the one compiled shape
        inputs = take(model_inputs(network, batch["images"], batch["labels"]["state"]), rows)
        cache = im.run_with_cache(network.model, network.variables, inputs, capture)
        cache = {k: np.asarray(v)[:n] for k, v in cache.items()}
        return cache, stats.unnormalize_action(cache["actions"]).astype(np.float32)

    return run


def frames_at(
    network: Network, dataset_dir: str | Path, episode_position: np.ndarray, frame: np.ndarray
) -> dict:
    """The network's inputs at some collected rows, read as `collect` reads them.

    Args:
        network: the network whose cameras, image size and statistics apply.
        dataset_dir: the dataset the rows were collected from.
        episode_position, frame: (n,) the rows' `episode_position` and `frame` labels.

    Returns:
        {"images": {camera: (n, H, W, 3) uint8}, "state": (n, S) normalised}, in row order.
        Only the episodes that hold the rows are read, and only those frames decoded.
    """
    mc = network.model.config
    source = png_source(dataset_dir)
    shape = (int(mc.image_size[0]), int(mc.image_size[1]), 3)
    images = {c: np.zeros((len(frame), *shape), np.uint8) for c in mc.cameras}
    state = np.zeros((len(frame), mc.state_dim), np.float32)
    for pos in np.unique(episode_position):
        ex = read_example(source, int(pos), str(dataset_dir))
        obs, where = ex["observation"], f"{dataset_dir}, episode {pos}"
        rows = np.flatnonzero(episode_position == pos)
        for c in mc.cameras:
            frames = PngFrames(obs[c], shape, f"{where}, camera {c!r}")
            for r in rows:
                images[c][r] = frames[int(frame[r])]
        state[rows] = np.asarray(obs["state"], np.float32)[frame[rows]]
    return model_inputs(network, images, state)


def dataset_for(network: Network, dataset: str | Path | None = None) -> Path:
    """`dataset`, or the dataset the checkpoint's config names; FileNotFoundError naming it if
    no `act_episodes` build is there."""
    from act_jax.data import dataset_dir_for

    path = Path(dataset) if dataset else dataset_dir_for(network.config.data)
    if not (path / "dataset_info.json").exists():
        raise FileNotFoundError(f"no act_episodes dataset at {path} (dataset_info.json missing)")
    return path


def _fit_pcas(batches, run, reduce, names, k: int, out_dir: Path) -> dict[str, dict]:
    """PCA per name on the reduced features of `batches`, each saved to `pca/<name>.npz`."""
    fit: dict[str, list] = {n: [] for n in names}
    for batch in batches:
        cache, _ = run(batch)
        for n in names:
            fit[n].append(reduce(n, cache[n]).reshape(len(cache[n]), -1))
    (out_dir / "pca").mkdir(parents=True, exist_ok=True)
    pcas = {}
    for n, rows in fit.items():
        pcas[n] = fit_pca(np.concatenate(rows), k)
        np.savez(out_dir / "pca" / f"{file_name(n)}.npz", **pcas[n])
    return pcas


class _Reduce:
    """Pooling (for the pooled names) then the PCA projection (once fitted)."""

    def __init__(self, pooled: set[str], tokens: TokenIndex):
        self.pooled, self.tokens, self.pcas = pooled, tokens, {}

    def __call__(self, name: str, value) -> np.ndarray:
        if name in self.pooled:
            value = pool(name, value, self.tokens)
        value = np.asarray(value, np.float32)
        if name not in self.pcas:
            return value
        p = self.pcas[name]
        return (value.reshape(len(value), -1) - p["mean"]) @ p["components"].T


def collect(
    network: Network,
    dataset_dir: str | Path,
    names: Sequence[str],
    out_dir: str | Path,
    *,
    pooled: bool | Sequence[str] = False,
    pca: int | None = None,
    pca_stride: int = 10,
    frame_stride: int = 1,
    batch_size: int = 32,
    shard_frames: int = 2048,
    max_episodes: int | None = None,
    progress: bool = True,
    command: str = "",
) -> dict:
    """Writes the named intermediates and the labels of every frame of a dataset to `out_dir`.

    Args:
        network: from `load_network` (or built directly, e.g. in tests).
        dataset_dir: a built `act_episodes` dataset whose frames have the model's image size.
        names: intermediate names (`act_jax.intermediates`).
        pooled, pca, pca_stride: the reductions of the module docstring; `pooled` may also
            name the intermediates to pool (the others are kept raw).
        frame_stride: collect every s-th frame of each episode (frames 0, s, 2s, ...).
        batch_size: frames per forward pass; shard_frames: frames per shard on disk.
        max_episodes: only the first episodes (a smoke run).

    Returns:
        The manifest (also written to `out_dir/manifest.json`).
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    names = check_names(network, names, pooled=pooled)
    pooled_names = set(names if pooled is True else (pooled or ()))
    mc = network.model.config
    source = png_source(dataset_dir)
    if len(source) == 0:
        raise ValueError(f"the dataset at {dataset_dir} holds no episodes")
    writer = ShardWriter(out_dir, shard_frames)  # fails now if out_dir is already a collection
    run = _runner(network, names, batch_size)
    stream = lambda stride, show: iter_batches(
        source,
        mc.cameras,
        mc.image_size,
        mc.chunk_size,
        batch_size,
        frame_stride=stride,
        max_episodes=max_episodes,
        where=str(dataset_dir),
        progress=show,
    )
    reduce = _Reduce(pooled_names, TokenIndex.for_config(mc))
    if pca:
        reduce.pcas = _fit_pcas(
            stream(pca_stride, progress), run, reduce, names, pca, Path(out_dir)
        )
    for batch in stream(frame_stride, progress):
        cache, pred = run(batch)
        features = {n: reduce(n, cache[n]) for n in names}
        writer.add(features, {**batch["labels"], "pred_actions": pred})
    how = {
        n: ("pool" if n in pooled_names else "raw") + (f"+pca{pca}" if pca else "") for n in names
    }
    episodes = min(len(source), max_episodes or len(source))
    settings = {"batch_size": batch_size, "pca_stride": pca_stride if pca else None}
    settings["frame_stride"] = frame_stride
    return writer.close(_manifest(network, dataset_dir, episodes, how, command, settings))


def _manifest(network: Network, dataset_dir, episodes: int, how: dict, command: str, settings):
    """What `manifest.json` says besides the shards: origin, features, labels, settings."""
    mc = network.model.config
    shapes = im.expected(mc, 1)
    return {
        "network": network.origin,
        "dataset": str(Path(dataset_dir).absolute()),
        "episodes": episodes,
        "command": command,
        "features": {n: {"reduce": r, "raw_shape": list(shapes[n][1:])} for n, r in how.items()},
        "labels": {k: {"doc": doc} for k, doc in LABELS.items()},
        "phases": list(PHASES),
        **settings,
        "cameras": list(mc.cameras),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from hardware.arguments import int_in
    from interp import cli

    p = cli.parser("interp.collect", __doc__)
    p.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/)")
    p.add_argument("--dataset", help="act_episodes dataset dir (default: the checkpoint's own)")
    p.add_argument("--names", nargs="+", required=True, help="intermediate names to collect")
    p.add_argument("--out", required=True, help="collection directory to write")
    p.add_argument("--pool", action="store_true", help="mean over the token axis")
    p.add_argument("--pca", type=int_in(1), default=None, help="keep K principal components")
    p.add_argument(
        "--pca-stride", type=int_in(1), default=10, help="PCA fitted on every s-th frame"
    )
    p.add_argument(
        "--random-init",
        type=int_in(0),
        default=None,
        metavar="SEED",
        help="fresh weights of the same architecture (the random-init control)",
    )
    p.add_argument("--batch-size", type=int_in(1), default=32)
    p.add_argument("--shard-frames", type=int_in(1), default=2048)
    p.add_argument("--max-episodes", type=int_in(1), default=None)
    p.add_argument(
        "--frame-stride", type=int_in(1), default=1, help="every s-th frame of each episode"
    )
    args = p.parse_args(argv)
    with cli.expected_errors(p, args, "--checkpoint"):
        network = load_network(args.checkpoint, random_init_seed=args.random_init)
    with cli.expected_errors(p, args, "--dataset"):
        dataset = dataset_for(network, args.dataset)
    command = "python -m interp.collect " + " ".join(sys.argv[1:] if argv is None else argv)
    with cli.expected_errors(p, args):
        m = collect(
            network,
            dataset,
            args.names,
            args.out,
            pooled=args.pool,
            pca=args.pca,
            pca_stride=args.pca_stride,
            batch_size=args.batch_size,
            shard_frames=args.shard_frames,
            max_episodes=args.max_episodes,
            frame_stride=args.frame_stride,
            command=command,
        )
    print(
        f"collected {m['frames']} frames of {m['episodes']} episodes into "
        f"{len(m['offsets']) - 1} shards in {args.out}: "
        + ", ".join(f"{n} {m['features'][n]['shape']}" for n in m["features"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

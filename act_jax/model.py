"""ACT (Action Chunking with Transformers) in flax.linen, matching LeRobot's ACT layer for layer.

Axis conventions (all tensors batch-first):
    B batch, K cameras, H x W image, h x w backbone feature map (stride 32), C_b backbone
    channels, N = 2 + K*h*w encoder tokens, D model dim, F feed-forward dim, C chunk size,
    S state dim, A action dim, L latent dim.

Data flow:
    images (K x (B, H, W, 3)) -> ImageNet normalisation -> shared ResNet18 (cameras folded into
    the batch) -> 1x1 `input_proj` -> K*h*w pixel tokens (camera by camera, row-major) with the
    2-D sine embedding; `latent_proj(z)` and `state_proj(state)` tokens with the learned
    `pos_embed_1d`; encoder over the N tokens; decoder with C zero queries; `action_head`.
    Training with the VAE: z ~ q(z | state, actions) from `vae_encoder`; otherwise z = 0.

Every analyst-facing activation is a hook point (recorded, and replaceable by a patch) under a
name documented in `act_jax/intermediates.py`.

Numerics: with weights converted from LeRobot's ACT (post- and pre-norm, two cameras, padded
chunks; float32, CPU) the action chunk agrees within 1.3e-6 at 96x128 and 1.7e-6 at 480x640, the
VAE posterior within 1.6e-6, and the layer4 maps, encoder and decoder outputs within 3e-6 of their
largest value (`bench/parity_lerobot.py`; bench/reference_results/cpu/parity_lerobot*.json).
Initialisation follows ACT where it matters and is otherwise simpler: Xavier-uniform transformer
weights (also in the VAE encoder, where LeRobot keeps PyTorch's defaults), N(0, 1) learned
embeddings, U(+-1/sqrt(fan_in)) projection kernels, zero biases (PyTorch draws them uniformly),
torchvision's Kaiming-normal convs and identity batch-norm (ACT starts from ImageNet weights,
which cannot be fetched here; the LeRobot converter loads them when available).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from act_jax import intermediates as im
from act_jax.resnet import CONV_IMPLS, POOL_IMPLS, ResNet18
from act_jax.transformer import Decoder, Encoder, EncoderLayer, sine_table_1d, sine_table_2d

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# PyTorch's nn.Linear default (kaiming_uniform, a=sqrt(5)) = U(+-1/sqrt(fan_in)): used for the
# projections outside the transformer, which ACT leaves at PyTorch defaults.
torch_linear_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
embedding_init = nn.initializers.normal(1.0)  # PyTorch's nn.Embedding: N(0, 1)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# ACTConfig fields that older saved configs lack; absent, they take the dataclass default.
OPTIONAL_FIELDS = frozenset({"backbone_conv", "backbone_pool"})


@dataclasses.dataclass(frozen=True)
class ACTConfig:
    """Model hyper-parameters: exactly the fields of `config.model` (defaults: the seed model)."""

    cameras: tuple[str, ...] = ("top", "lateral")
    image_size: tuple[int, int] = (480, 640)
    state_dim: int = 6
    action_dim: int = 6
    chunk_size: int = 100
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    n_encoder_layers: int = 3
    n_decoder_layers: int = 1
    n_vae_encoder_layers: int = 4
    dropout: float = 0.1
    pre_norm: bool = False
    use_vae: bool = True
    latent_dim: int = 32
    backbone_width: float = 1.0
    # How the backbone's convolutions are differentiated (act_jax/resnet.py): the same numbers
    # either way; "fast" avoids XLA:CPU's slow gradient lowerings (bench/conv_backward.py), "auto"
    # takes it where it was measured faster (the CPU, a backbone of width >= 0.5).
    backbone_conv: str = "auto"
    # The same for the stem's max-pool (act_jax/fast_pool.py, bit-identical); "auto" takes "fast"
    # on the CPU, where it was measured faster at every width.
    backbone_pool: str = "auto"
    dtype: str = "float32"

    def __post_init__(self):
        # ConfigDicts hand back lists; keep the dataclass hashable (flax module attribute).
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_size", tuple(self.image_size))
        self._validate()

    def _validate(self):
        def fail(field, msg):
            raise ValueError(f"config.model.{field}={getattr(self, field)!r}: {msg}")

        if not self.cameras or not all(isinstance(c, str) and c for c in self.cameras):
            fail("cameras", "must be a non-empty tuple of camera names")
        if len(set(self.cameras)) != len(self.cameras):
            fail("cameras", "camera names must be unique")
        if len(self.image_size) != 2 or not all(
            isinstance(s, (int, np.integer)) and s > 0 for s in self.image_size
        ):
            fail("image_size", "must be (height, width), two positive ints")
        for f in (
            "state_dim",
            "action_dim",
            "chunk_size",
            "dim_model",
            "n_heads",
            "dim_feedforward",
            "n_encoder_layers",
            "n_decoder_layers",
            "latent_dim",
        ):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                fail(f, "must be a positive int")
        if not isinstance(self.n_vae_encoder_layers, (int, np.integer)) or (
            self.n_vae_encoder_layers < (1 if self.use_vae else 0)
        ):
            fail("n_vae_encoder_layers", "must be an int >= 1 when use_vae")
        if self.dim_model % self.n_heads:
            fail("dim_model", f"must be divisible by n_heads={self.n_heads}")
        if self.dim_model % 2:
            fail("dim_model", "must be even (the 2-D sine embedding gives D/2 to each axis)")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if not self.backbone_width > 0:
            fail("backbone_width", "must be > 0")
        if self.backbone_conv not in CONV_IMPLS:
            fail("backbone_conv", f"must be one of {list(CONV_IMPLS)}")
        if self.backbone_pool not in POOL_IMPLS:
            fail("backbone_pool", f"must be one of {list(POOL_IMPLS)}")
        if self.dtype not in DTYPES:
            fail("dtype", f"must be one of {sorted(DTYPES)}")

    @classmethod
    def from_config(cls, model_config: Any) -> ACTConfig:
        """Builds from `config.model` (a ConfigDict or mapping); unknown/missing fields raise.

        Fields added after checkpoints were first written (`OPTIONAL_FIELDS`) take their default
        when absent, so older checkpoints' configs still load.
        """
        given = dict(model_config.items()) if hasattr(model_config, "items") else model_config
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - fields)
        missing = sorted(fields - set(given) - OPTIONAL_FIELDS)
        if unknown:
            raise ValueError(
                f"config.model has unknown field(s) {unknown}; known: {sorted(fields)}"
            )
        if missing:
            raise ValueError(f"config.model is missing field(s) {missing}")
        return cls(**{k: given[k] for k in fields if k in given})

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]


class VAEEncoder(nn.Module):
    """ACT's CVAE posterior q(z | state, actions): a transformer encoder over [cls, state, a_1..C].

    Uses the fixed 1-D sine table for positions and masks padded actions out of the keys. Each
    layer sows under `vae_encoder/layer_{i}/`.
    """

    config: ACTConfig

    @nn.compact
    def __call__(self, state, actions, action_is_pad, *, deterministic: bool):
        """Encodes the demonstrated chunk.

        Args:
            state: (B, S); actions: (B, C, A); action_is_pad: (B, C) bool.

        Returns:
            mu (B, L) and logvar (B, L) (LeRobot's `log_sigma_x2`).
        """
        cfg, dt = self.config, self.config.compute_dtype
        b, d = state.shape[0], cfg.dim_model
        dense = dict(dtype=dt, kernel_init=torch_linear_init)
        cls = self.param("cls_embed", embedding_init, (1, d))
        tokens = jnp.concatenate(
            [
                jnp.broadcast_to(cls.astype(dt)[None], (b, 1, d)),
                nn.Dense(d, name="state_proj", **dense)(state)[:, None],
                nn.Dense(d, name="action_proj", **dense)(actions),
            ],
            axis=1,
        )  # (B, 2 + C, D)
        pos = jnp.asarray(sine_table_1d(2 + cfg.chunk_size, d))[None]  # (1, 2 + C, D)
        mask = jnp.concatenate([jnp.zeros((b, 2), bool), action_is_pad], axis=1)  # (B, 2 + C)
        x = tokens
        for i in range(cfg.n_vae_encoder_layers):
            x = EncoderLayer(
                d,
                cfg.n_heads,
                cfg.dim_feedforward,
                cfg.dropout,
                cfg.pre_norm,
                dt,
                name=f"layer_{i}",
            )(x, pos, mask, deterministic=deterministic)
        if cfg.pre_norm:
            x = nn.LayerNorm(epsilon=1e-5, dtype=dt, name="norm")(x)
        out = nn.Dense(2 * cfg.latent_dim, name="latent_output_proj", **dense)(x[:, 0])
        out = out.astype(jnp.float32)
        return out[:, : cfg.latent_dim], out[:, cfg.latent_dim :]


class ACT(nn.Module):
    """The ACT policy network. See the module docstring for the data flow.

    Besides `__call__`, three methods expose the halves of the network for analysis, e.g. to
    cache encoder outputs once and train or probe only the decoder on them:
    `model.apply(variables, images, state, method=ACT.encode, train=False)` -> (memory, pos),
    `model.apply(variables, memory, pos, method=ACT.decode, train=False)` -> actions, and
    `ACT.posterior` (the CVAE encoder). Each sows the same intermediates as in `__call__`.
    """

    config: ACTConfig

    def setup(self):
        cfg, dt = self.config, self.config.compute_dtype
        d = cfg.dim_model
        dense = dict(dtype=dt, kernel_init=torch_linear_init)
        if cfg.use_vae:
            self.vae_encoder = VAEEncoder(cfg)
        self.backbone = ResNet18(cfg.backbone_width, dt, cfg.backbone_conv, cfg.backbone_pool)
        self.input_proj = nn.Conv(d, (1, 1), **dense)  # as LeRobot's 1x1 Conv2d
        self.latent_proj = nn.Dense(d, **dense)
        self.state_proj = nn.Dense(d, **dense)
        self.pos_embed_1d = self.param("pos_embed_1d", embedding_init, (2, d))  # latent, state
        layer_args = (d, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, cfg.pre_norm, dt)
        self.encoder = Encoder(cfg.n_encoder_layers, *layer_args)
        self.decoder = Decoder(cfg.n_decoder_layers, cfg.chunk_size, *layer_args)
        self.action_head = nn.Dense(cfg.action_dim, **dense)

    def __call__(self, images, state, actions=None, action_is_pad=None, *, train: bool):
        """Predicts a chunk of actions.

        Args:
            images: camera -> (B, H, W, 3) uint8, or float in [0, 255].
            state: (B, S) normalised state.
            actions: (B, C, A) normalised targets; required when `train` and `use_vae`.
            action_is_pad: (B, C) bool, True past the episode end (default: no padding).
            train: dropout on, VAE posterior sample (rngs "dropout" and "latent").

        Returns:
            {"actions": (B, C, A) float32, "mu": (B, L) or None, "logvar": (B, L) or None}.
        """
        cfg = self.config
        b = self._check_inputs(images, state, actions, action_is_pad, train)
        mu = logvar = None
        latent = None  # encode() uses the prior mean, zero, as ACT does at inference
        if cfg.use_vae and (train or self.is_initializing()):
            # At init the VAE runs on dummy actions so that its params exist for training.
            if actions is None:
                actions = jnp.zeros((b, cfg.chunk_size, cfg.action_dim), jnp.float32)
            mu, logvar = self.posterior(state, actions, action_is_pad, train=train)
            if train:
                eps = jax.random.normal(self.make_rng("latent"), mu.shape, mu.dtype)
                latent = mu + jnp.exp(0.5 * logvar) * eps  # reparametrisation
            else:
                mu = logvar = None
        memory, pos = self.encode(images, state, latent, train=train)
        return {"actions": self.decode(memory, pos, train=train), "mu": mu, "logvar": logvar}

    def posterior(self, state, actions, action_is_pad=None, *, train: bool):
        """q(z | state, actions): state (B, S), actions (B, C, A) -> mu, logvar (B, L) each."""
        if action_is_pad is None:
            action_is_pad = jnp.zeros(np.shape(actions)[:2], bool)
        mu, logvar = self.vae_encoder(
            jnp.asarray(state, jnp.float32),
            jnp.asarray(actions, jnp.float32),
            jnp.asarray(action_is_pad, bool),
            deterministic=not train,
        )
        return im.hook(self, "vae/mu", mu), im.hook(self, "vae/logvar", logvar)

    def encode(self, images, state, latent=None, *, train: bool):
        """Backbone + token assembly + transformer encoder.

        Args:
            images: camera -> (B, H, W, 3); state: (B, S); latent: (B, L), None for zero.

        Returns:
            memory (B, N, D) and the position embedding pos (1, N, D) the decoder needs.
        """
        cfg, dt = self.config, self.config.compute_dtype
        b = self._check_inputs(images, state, None, None, train=False)
        d = cfg.dim_model
        if latent is None:
            latent = jnp.zeros((b, cfg.latent_dim), jnp.float32)
        # Pixel tokens: one backbone call for all cameras (shared weights, as in ACT).
        x = jnp.concatenate([jnp.asarray(images[c]) for c in cfg.cameras], axis=0)  # (K*B,H,W,3)
        x = (x.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        feats = self.backbone(x)  # (K*B, h, w, C_b)
        k, (h, w) = len(cfg.cameras), feats.shape[1:3]
        names = [f"backbone/{cam}" for cam in cfg.cameras]
        if self.is_mutable_collection(im.COLLECTION) or im.any_patched(self, names):
            # Only then slice per camera (and re-join, when one of them is patched).
            parts = [im.hook(self, n, feats[i * b : (i + 1) * b]) for i, n in enumerate(names)]
            feats = jnp.concatenate(parts, axis=0) if im.any_patched(self, names) else feats
        pix = self.input_proj(feats)  # (K*B, h, w, D)
        pix = pix.reshape(k, b, h * w, d).transpose(1, 0, 2, 3).reshape(b, k * h * w, d)
        pix_pos = np.tile(sine_table_2d(h, w, d), (k, 1))  # (K*h*w, D), same grid per camera
        state_tok = self.state_proj(jnp.asarray(state, jnp.float32))
        tokens = [self.latent_proj(latent)[:, None], state_tok[:, None], pix]
        tokens = jnp.concatenate(tokens, axis=1).astype(dt)  # (B, N, D)
        pos = jnp.concatenate([self.pos_embed_1d, jnp.asarray(pix_pos)], axis=0)[None]
        # Hooked here, not in the encoder, so a patch reaches the decoder's cross-attention keys.
        pos = im.hook(self, "encoder/pos_embed", pos)
        return self.encoder(tokens, pos, deterministic=not train), pos

    def decode(self, memory, pos, *, train: bool):
        """Decoder + action head: memory (B, N, D), pos (1, N, D) -> actions (B, C, A) float32."""
        out = self.decoder(memory, pos, deterministic=not train)
        return im.hook(self, "actions", self.action_head(out).astype(jnp.float32))

    def _check_inputs(self, images, state, actions, action_is_pad, train) -> int:
        """Validates shapes against the config (at trace time) and returns the batch size."""
        cfg = self.config
        if not hasattr(images, "keys"):
            raise ValueError(f"images must be a dict camera -> (B, H, W, 3), got {type(images)}")
        missing = [c for c in cfg.cameras if c not in images]
        extra = sorted(set(images) - set(cfg.cameras))
        if missing or extra:
            raise ValueError(
                f"images: expected cameras {list(cfg.cameras)} (config.model.cameras), got "
                f"{sorted(images)}; missing {missing}, unexpected {extra}"
            )
        state_shape = np.shape(state)
        if len(state_shape) != 2 or state_shape[1] != cfg.state_dim:
            raise ValueError(
                f"state: expected shape (B, {cfg.state_dim}) (config.model.state_dim), "
                f"got {state_shape}"
            )
        b = state_shape[0]
        want = (b, *cfg.image_size, 3)
        for cam in cfg.cameras:
            if tuple(np.shape(images[cam])) != want:
                raise ValueError(
                    f"images[{cam!r}]: expected shape {want} (batch of state, "
                    f"config.model.image_size, RGB), got {tuple(np.shape(images[cam]))}"
                )
        want = (b, cfg.chunk_size, cfg.action_dim)
        if actions is not None and tuple(np.shape(actions)) != want:
            raise ValueError(f"actions: expected shape {want}, got {tuple(np.shape(actions))}")
        if actions is None and train and cfg.use_vae:
            raise ValueError("actions are required when train=True and config.model.use_vae")
        if action_is_pad is not None and tuple(np.shape(action_is_pad)) != want[:2]:
            raise ValueError(
                f"action_is_pad: expected shape {want[:2]}, got {tuple(np.shape(action_is_pad))}"
            )
        return b


def dummy_inputs(config: ACTConfig, batch_size: int = 1) -> tuple[dict, np.ndarray]:
    """Zero images (uint8) and state of the right shapes, e.g. for `init` or `jax.eval_shape`."""
    images = {c: np.zeros((batch_size, *config.image_size, 3), np.uint8) for c in config.cameras}
    return images, np.zeros((batch_size, config.state_dim), np.float32)


def init_variables(model: ACT, rng: jax.Array, batch_size: int = 1) -> dict:
    """Jitted `model.init` on dummy inputs -> {"params": ..., "batch_stats": ...}.

    The VAE encoder's params are created too (when `use_vae`), although init runs in inference
    mode. On CPU the init program is compiled without XLA's backend optimisations: it runs once,
    and they triple its compile time (18 s -> 6 s for the CPU default config on 2 cores) for
    values that agree with the optimised build to float rounding (max |diff| ~5e-7).
    """
    images, state = dummy_inputs(model.config, batch_size)
    # Inputs are arguments, not closed-over constants, so XLA does not constant-fold the net.
    init = jax.jit(lambda r, i, s: model.init({"params": r}, i, s, train=False))
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return init.lower(rng, images, state).compile(compiler_options=options)(rng, images, state)


def act_loss(outputs, actions, action_is_pad, kl_weight: float):
    """ACT's loss: masked L1 + kl_weight * KL.

    The L1 is averaged over the valid (non-padded) elements, as LeRobot does since its PR #3442;
    LeRobot 0.4.4 and the original ACT divide by all elements, padded ones included, which
    scales the L1 term down by the padded fraction.

    Args:
        outputs: `ACT.__call__` result; "mu"/"logvar" None means no KL term.
        actions: (B, C, A) normalised targets.
        action_is_pad: (B, C) bool or None (no padding).
        kl_weight: weight of the KL term (ACT uses 10).

    Returns:
        (loss, {"loss", "l1", "kl"}) scalars.
    """
    err = jnp.abs(outputs["actions"] - actions)  # (B, C, A)
    valid = jnp.ones(err.shape[:2], bool) if action_is_pad is None else ~action_is_pad
    valid = jnp.broadcast_to(valid[..., None], err.shape).astype(err.dtype)
    l1 = jnp.sum(err * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    mu, logvar = outputs.get("mu"), outputs.get("logvar")
    if mu is None:
        kl = jnp.zeros((), err.dtype)
    else:
        kl = jnp.mean(jnp.sum(-0.5 * (1 + logvar - mu**2 - jnp.exp(logvar)), axis=-1))
    loss = l1 + kl_weight * kl
    return loss, {"loss": loss, "l1": l1, "kl": kl}


def count_params(params) -> int:
    """Number of scalars in a param tree (pass `variables["params"]`)."""
    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(params)))

"""Where each encoder token sits: the token layout of an ACT config as named index sets.

The encoder's token axis (N) is `[latent, state, <camera 0> pixels row-major, <camera 1> ...]`
(DESIGN.md, "Conventions that are API"). Every analysis that addresses tokens (ablation, key
knock-out, patch sweeps, attention shares, overlays of attention on camera images) goes through
`TokenIndex`, so that the layout is written down once, next to `act_jax.resnet.feature_shape`.

    >>> t = TokenIndex.for_config(model_config)
    >>> t.latent, t.state          # 0, 1
    >>> t.camera("top")            # (h*w,) int array of the top camera's tokens
    >>> t.pixel("lateral", 1, 2)   # the token of lateral feature-map cell (row 1, col 2)
    >>> t.to_grid(values, "top")   # (N,) per-token values -> (h, w) map of the top camera
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from act_jax.resnet import feature_shape

LATENT = 0
STATE = 1
N_SPECIAL = 2  # tokens before the first pixel token


@dataclasses.dataclass(frozen=True)
class TokenIndex:
    """Token positions of one model configuration.

    Attributes:
        cameras: camera names in token order (the config's order).
        grid: (h, w) of each camera's layer4 feature map (the same for every camera).
    """

    cameras: tuple[str, ...]
    grid: tuple[int, int]

    @classmethod
    def for_config(cls, model_config: Any) -> TokenIndex:
        """From an `ACTConfig` or `config.model` (needs cameras, image_size, backbone_width)."""
        h, w, _ = feature_shape(tuple(model_config.image_size), model_config.backbone_width)
        return cls(cameras=tuple(model_config.cameras), grid=(h, w))

    @property
    def latent(self) -> int:
        return LATENT

    @property
    def state(self) -> int:
        return STATE

    @property
    def pixels_per_camera(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def n_tokens(self) -> int:
        """N: 2 + cameras x h x w (26 for the CPU default, 602 for the seed architecture)."""
        return N_SPECIAL + len(self.cameras) * self.pixels_per_camera

    def _camera_offset(self, camera: str) -> int:
        if camera not in self.cameras:
            raise KeyError(f"unknown camera {camera!r}; this model's cameras: {list(self.cameras)}")
        return N_SPECIAL + self.cameras.index(camera) * self.pixels_per_camera

    def camera(self, camera: str) -> np.ndarray:
        """(h*w,) token indices of `camera`'s pixels, row-major."""
        start = self._camera_offset(camera)
        return np.arange(start, start + self.pixels_per_camera)

    def pixels(self) -> np.ndarray:
        """(cameras*h*w,) token indices of every pixel token."""
        return np.arange(N_SPECIAL, self.n_tokens)

    def pixel(self, camera: str, row: int, col: int) -> int:
        """Token index of feature-map cell (row, col) of `camera`."""
        h, w = self.grid
        if not (0 <= row < h and 0 <= col < w):
            raise IndexError(f"cell ({row}, {col}) is outside the {h}x{w} feature map")
        return self._camera_offset(camera) + row * w + col

    def label(self, token: int) -> str:
        """A readable name: "latent", "state" or "top(1,2)"."""
        if token == LATENT:
            return "latent"
        if token == STATE:
            return "state"
        if not N_SPECIAL <= token < self.n_tokens:
            raise IndexError(f"token {token} is outside 0..{self.n_tokens - 1}")
        k, cell = divmod(token - N_SPECIAL, self.pixels_per_camera)
        row, col = divmod(cell, self.grid[1])
        return f"{self.cameras[k]}({row},{col})"

    def labels(self) -> list[str]:
        """`label` of every token, in token order."""
        return [self.label(t) for t in range(self.n_tokens)]

    def to_grid(self, values: np.ndarray, camera: str) -> np.ndarray:
        """Per-token values (..., N) -> that camera's (..., h, w) map."""
        values = np.asarray(values)
        if values.shape[-1] != self.n_tokens:
            raise ValueError(f"expected a last axis of {self.n_tokens} tokens, got {values.shape}")
        return values[..., self.camera(camera)].reshape(*values.shape[:-1], *self.grid)

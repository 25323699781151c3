"""interp.batches: the one padded mini-batch loop of the analyses."""

import numpy as np
import pytest

from interp.batches import in_batches, padded, take


def test_pieces_cover_every_frame_once_and_pad_with_the_last_one():
    pieces = list(padded(5, 2))
    assert [rows.tolist() for rows, _ in pieces] == [[0, 1], [2, 3], [4, 4]]
    assert [keep for _, keep in pieces] == [2, 2, 1]
    assert [r.tolist() for r, _ in padded(2, 4)] == [[0, 1, 1, 1]]  # fewer frames than a batch
    with pytest.raises(ValueError, match="n >= 1"):
        list(padded(0, 4))


def test_in_batches_equals_one_call_over_everything_and_sees_one_shape():
    batch = {"images": {"top": np.arange(14).reshape(7, 2)}, "state": np.arange(7.0)[:, None]}
    shapes = []

    def fn(sub):
        shapes.append((sub["images"]["top"].shape, sub["state"].shape))
        return sub["state"] * 2 + sub["images"]["top"][:, :1]

    want = batch["state"] * 2 + batch["images"]["top"][:, :1]
    np.testing.assert_array_equal(in_batches(fn, batch, 3), want)
    assert set(shapes) == {((3, 2), (3, 1))}  # the last piece padded: one compiled shape
    np.testing.assert_array_equal(in_batches(fn, batch, 100), want)  # at most all frames
    assert shapes[-1] == ((7, 2), (7, 1))
    assert take(batch, np.array([6, 0]))["state"].ravel().tolist() == [6.0, 0.0]

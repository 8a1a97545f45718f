"""nanobiggan/lab/images.py: the one quantization of G's pixels (rounded half up: floor(x * 127.5 + 128), clamped)
and PNG grids that hold exactly those pixels."""
import numpy as np
import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from nanobiggan.lab.images import save_grid, to_uint8


def from_uint8(u: torch.Tensor) -> torch.Tensor:
    """(n h w 3) uint8 -> (n 3 h w) in [-1, 1], the inverse of to_uint8 (up to the layout)."""
    return rearrange(u.float() / 127.5 - 1, "n h w c -> n c h w")


# ---- to_uint8: one rounding, stated: (x + 1) * 127.5 rounded half UP = floor(x * 127.5 + 128), clamped

@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.just(3), st.integers(1, 3), st.integers(1, 3)),
              elements=st.floats(-3, 3, width=32)))
def test_to_uint8_matches_explicit_formula(x):
    ref = np.clip(np.floor(x * np.float32(127.5) + np.float32(128)), 0, 255).astype(np.uint8)  # half up
    out = to_uint8(torch.from_numpy(x))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(out.numpy(), ref)


@given(st.lists(st.floats(-1.5, 1.5, width=32), min_size=1, max_size=64))
def test_to_uint8_rounds_half_up_and_clamps(values):
    x = torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1, 1)
    u = to_uint8(x)
    assert u.dtype == torch.uint8 and u.shape == (len(values), 3, 1, 1)  # one gray channel -> three
    expected = np.clip(np.floor(np.float32(values) * np.float32(127.5) + np.float32(128)), 0, 255)
    np.testing.assert_array_equal(u[:, 0, 0, 0].numpy(), expected)
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.full((1, 3, 2, 2), float("nan")))


def test_to_uint8_endpoints_and_bad_shapes():
    assert to_uint8(torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1)).flatten().tolist() == [0, 128, 255]
    # x = 0 is (x + 1) * 127.5 = 127.5, a tie: up to 128 (the only tie a float x in [-1, 1] can hit exactly)
    u = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8(u), u)  # uint8 passes through
    for bad in (torch.zeros(3, 4, 4), torch.zeros(1, 2, 4, 4)):
        with pytest.raises(ValueError, match="c = 1 or 3"):
            to_uint8(bad)
    with pytest.raises(TypeError, match="uint8"):
        to_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.int32))


# ---- save_grid

@settings(max_examples=15)
@given(n=st.integers(1, 7), nrow=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 99))
def test_grid_size_and_content_round_trip(tmp_path_factory, n, nrow, h, w, seed):
    known = torch.randint(0, 256, (n, h, w, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    path = save_grid(from_uint8(known), tmp_path_factory.mktemp("g") / "sub" / "grid.png", nrow=nrow)
    grid = np.asarray(Image.open(path))
    rows, cols, p = -(-n // nrow), min(n, nrow), 2
    assert grid.shape == (rows * (h + p) + p, cols * (w + p) + p, 3)
    mask = np.zeros(grid.shape[:2], bool)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = p + r * (h + p), p + c * (w + p)
        np.testing.assert_array_equal(grid[top:top + h, left:left + w], known[i].numpy())
        mask[top:top + h, left:left + w] = True
    assert (grid[~mask] == 0).all()  # padding and empty cells are black
    assert [f.name for f in path.parent.iterdir()] == ["grid.png"]  # no temp file left behind


def test_grid_overwrites_atomically_and_rejects_bad_input(tmp_path):
    path = tmp_path / "g.png"
    save_grid(torch.zeros(2, 3, 4, 4), path, nrow=2)
    save_grid(torch.ones(1, 3, 4, 4), path, nrow=2)
    assert np.asarray(Image.open(path))[2:6, 2:6].min() == 255 and sorted(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError, match=".png"):
        save_grid(torch.zeros(1, 3, 4, 4), tmp_path / "g.jpg", nrow=1)
    with pytest.raises(ValueError, match="nrow"):
        save_grid(torch.zeros(1, 3, 4, 4), path, nrow=0)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 7), nrow=st.integers(1, 4), scale=st.integers(1, 3), labels=st.booleans(), seed=st.integers(0, 99))
def test_scaled_labelled_grid_holds_the_plain_sheet_pixel_for_pixel(tmp_path_factory, n, nrow, scale, labels, seed):
    """scale repeats every pixel scale×scale; labels only add a white margin left and above: the sheet inside is
    the plain one, nearest-neighbour enlarged (np.kron), at the bottom-right corner of the canvas."""
    known = torch.randint(0, 256, (n, 6, 5, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    d = tmp_path_factory.mktemp("l")
    plain = np.asarray(Image.open(save_grid(from_uint8(known), d / "plain.png", nrow=nrow)))
    rows, cols = -(-n // nrow), min(n, nrow)
    kw = dict(row_labels=[f"row {i}" for i in range(rows)], col_labels=[str(j) for j in range(cols)]) if labels else {}
    big = np.asarray(Image.open(save_grid(from_uint8(known), d / "big.png", nrow=nrow, scale=scale, **kw)))
    enlarged = np.kron(plain, np.ones((scale, scale, 1), np.uint8))
    h, w = enlarged.shape[:2]
    np.testing.assert_array_equal(big[-h:, -w:], enlarged)
    if labels:
        top, left = big.shape[0] - h, big.shape[1] - w
        assert top > 0 and left > 0 and (big[:top, left:] < 255).any() and (big[top:, :left] < 255).any()  # ink
    else:
        assert big.shape[:2] == (h, w)


def test_labelled_grid_refuses_wrong_label_counts_and_scales(tmp_path):
    x = torch.zeros(6, 3, 4, 4)
    with pytest.raises(ValueError, match="row_labels has 3 labels for 2 rows: give one per row"):
        save_grid(x, tmp_path / "g.png", nrow=3, row_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="col_labels has 2 labels for 3 columns"):
        save_grid(x, tmp_path / "g.png", nrow=3, col_labels=["a", "b"])
    with pytest.raises(ValueError, match="scale must be an int >= 1"):
        save_grid(x, tmp_path / "g.png", nrow=3, scale=0)
    assert not list(tmp_path.iterdir())

"""SRRF edge maps against the published NanoJ-SRRF edge map of the SFSRM example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from saft_core.edges import EDGE_BACKGROUND, compute_edges, rescale_edges
from saft_core.errors import InvalidStackError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sfsrm-microtubule"


@pytest.fixture(scope="module")
def widefield() -> np.ndarray:
    return tifffile.imread(EXAMPLE / "widefield.tif").astype(np.float32)


@pytest.fixture(scope="module")
def published() -> np.ndarray:
    return tifffile.imread(EXAMPLE / "edgemap_nanoj_srrf.tif").astype(np.float32)


def test_matches_published_nanoj_edge_map(widefield: np.ndarray, published: np.ndarray) -> None:
    edges = compute_edges(widefield)
    assert edges.shape == widefield.shape
    assert edges.dtype == np.float32
    assert edges.min() >= 0 and edges.max() <= 255
    r = np.corrcoef(edges.ravel(), published.ravel())[0, 1]
    assert r >= 0.85, r
    # The 8-bit rescale reproduces the published histogram, not just the pattern.
    q = [50, 90, 99, 99.9]
    np.testing.assert_allclose(np.percentile(edges, q), np.percentile(published, q), atol=12)
    assert np.abs(edges - published).mean() < 5
    # Border pixels (no radiality ring fits) sit at the published background level.
    assert np.all(edges[0] == EDGE_BACKGROUND)
    assert np.all(published[0] == EDGE_BACKGROUND)


def test_stack_frames_are_independent_and_progress_is_reported(widefield: np.ndarray) -> None:
    crop = widefield[:64, :80]
    stack = np.stack([crop, crop[::-1].copy(), np.zeros_like(crop)])
    calls: list[tuple[int, int]] = []
    edges = compute_edges(stack, progress=lambda done, total: calls.append((done, total)))
    assert edges.shape == (3, 64, 80)
    assert edges.dtype == np.float32
    assert edges.min() >= 0 and edges.max() <= 255
    assert calls == [(1, 3), (2, 3), (3, 3)]
    np.testing.assert_allclose(edges[0], compute_edges(crop))
    np.testing.assert_allclose(edges[1], compute_edges(crop[::-1].copy()))
    assert edges[0].max() == pytest.approx(255)
    assert np.all(edges[2] == EDGE_BACKGROUND)  # a blank frame has no edges, and no NaN


def test_edges_follow_structure() -> None:
    """A bright line gives strong edges on the line and background far from it."""
    img = np.full((40, 40), 10.0, np.float32)
    yy = np.arange(40)[:, None]
    img += 100 * np.exp(-((yy - 20.0) ** 2) / (2 * 1.5**2)) * np.ones((1, 40))
    e = compute_edges(img)
    assert e[20, 5:35].mean() > 200
    assert e[5, 5:35].max() < EDGE_BACKGROUND + 5


def test_rescale_edges_handles_negative_and_flat() -> None:
    out = rescale_edges(np.array([[-3.0, 0.0, 2.0, 4.0]]))
    np.testing.assert_allclose(out, [[21.0, 21.0, 138.0, 255.0]])
    assert np.all(rescale_edges(np.zeros((4, 4))) == EDGE_BACKGROUND)


def test_invalid_input_is_rejected() -> None:
    bad = np.ones((2, 20, 20), np.float32)
    bad[1, 3, 3] = np.inf
    with pytest.raises(InvalidStackError, match="frame 1") as err:
        compute_edges(bad)
    assert err.value.field == "lr"
    with pytest.raises(InvalidStackError):
        compute_edges(np.ones((2, 2, 20, 20)))

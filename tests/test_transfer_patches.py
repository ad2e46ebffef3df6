import numpy as np
import pytest

from minicnn.transfer import aggregate_by_image, aggregate_scores, sample_patches, score_map
from minicnn.transfer.patches import SCALES, describe_sampler, patch_counts, whole_image_box


@pytest.mark.parametrize("w,h", [(500, 375), (375, 500), (500, 333), (160, 120), (100, 100), (353, 500)])
def test_sampler_geometry(w, h):
    boxes = sample_patches(w, h)
    assert boxes.shape[1] == 4
    side = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(side, boxes[:, 3] - boxes[:, 1])        # square
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= w + 1e-9 and boxes[:, 3].max() <= h + 1e-9
    sides = np.unique(np.round(side, 6))
    np.testing.assert_allclose(sorted(sides, reverse=True), [min(w, h) / s for s in SCALES])
    for s in sides:  # a regular grid with at least 50% overlap, covering the image
        at = boxes[np.isclose(side, s)]
        for axis, length in ((0, w), (1, h)):
            pos = np.unique(np.round(at[:, axis], 9))
            assert pos[0] == 0 and pos[-1] == pytest.approx(length - s)
            if len(pos) > 1:
                steps = np.diff(pos)
                np.testing.assert_allclose(steps, steps[0], rtol=1e-6)
                assert steps[0] <= 0.5 * s + 1e-9
    assert len(boxes) == sum(patch_counts(w, h).values())


def test_sampler_gives_about_500_on_a_voc_sized_image():
    assert 480 <= len(sample_patches(500, 375)) <= 520
    assert len(sample_patches(375, 500)) == len(sample_patches(500, 375))
    assert "496 patches on 500x375" in describe_sampler()


def test_sampler_scales_and_stride_are_configurable():
    boxes = sample_patches(200, 100, scales=(1.0,), stride_fraction=0.5)
    np.testing.assert_allclose(boxes, [[0, 0, 100, 100], [50, 0, 150, 100], [100, 0, 200, 100]])
    assert len(sample_patches(100, 100, scales=(1.0, 2.0), stride_fraction=0.5)) == 1 + 9
    with pytest.raises(ValueError, match="50% overlap"):
        sample_patches(100, 100, stride_fraction=0.6)
    with pytest.raises(ValueError, match="positive"):
        sample_patches(0, 100)
    np.testing.assert_array_equal(whole_image_box(30, 20), [[0, 0, 30, 20]])


def test_aggregate_scores_formula():
    p = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    np.testing.assert_allclose(aggregate_scores(p, k=1), p.mean(axis=0))
    np.testing.assert_allclose(aggregate_scores(p, k=5), [(0.9**5 + 0.5**5 + 0.2**5) / 3,
                                                         (0.1**5 + 0.5**5 + 0.8**5) / 3])
    big_k = aggregate_scores(p, k=200) ** (1 / 200)
    np.testing.assert_allclose(big_k, p.max(axis=0), rtol=0.01)  # large k tends to the max
    with pytest.raises(ValueError):
        aggregate_scores(np.zeros((0, 3)))


def test_aggregate_by_image_matches_per_image(rng):
    p = rng.random((10, 3))
    idx = np.array([0, 0, 2, 2, 2, 0, 2, 0, 0, 2])
    out = aggregate_by_image(p, idx, 3, k=5)
    np.testing.assert_allclose(out[0], aggregate_scores(p[idx == 0]))
    np.testing.assert_allclose(out[2], aggregate_scores(p[idx == 2]))
    assert np.isnan(out[1]).all()
    highest = aggregate_by_image(p, idx, 3, k=np.inf)  # k = inf: the maximum patch
    np.testing.assert_array_equal(highest[[0, 2]], [p[idx == 0].max(axis=0), p[idx == 2].max(axis=0)])
    assert np.isnan(highest[1]).all()


def test_score_map_is_the_mean_over_covering_patches():
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], dtype=float)
    values = np.array([[1.0], [3.0]])
    m = score_map(boxes, values, width=4, height=3)[0]
    expected = np.array([[1, 1, 0, 0], [1, 2, 3, 0], [0, 3, 3, 0]], dtype=float)
    np.testing.assert_allclose(m, expected)

import numpy as np
import pytest

import minicnn as mc
from minicnn.transfer.features import build_feature_cache, extract


def setup(n_images=5):
    net = mc.models.small_alexnet(4, input_size=16, channels=(4, 8, 8, 8, 8), hidden=12)
    end = net.names.index("drop7") + 1
    prefix = mc.Sequential(net.layers[:end], net.names[:end])
    images = [f"img{i}" for i in range(n_images)]
    counts = [3, 1, 4, 2, 5][:n_images]

    def boxes_of(i):
        return np.tile([[0, 0, 8, 8]], (counts[i], 1)) + i

    def labels_of(i):
        return np.arange(counts[i]) % 3

    def render(i, boxes):
        rng = np.random.default_rng(100 + i)
        return rng.standard_normal((counts[i], 3, 16, 16)).astype(np.float32)[: len(boxes)]

    return prefix, images, boxes_of, labels_of, render


def test_cache_equals_direct_computation_and_is_reused(tmp_path):
    prefix, images, boxes_of, labels_of, render = setup()
    cache = build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of, render,
                                {"sampler": "test"}, batch_size=2)
    assert cache.features.shape == (15, 12) and isinstance(cache.features, np.memmap)
    for i in range(5):
        np.testing.assert_allclose(cache.features[cache.rows_of(i)],
                                   extract(prefix, render(i, boxes_of(i))), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(cache.image[cache.rows_of(i)], i)
    np.testing.assert_array_equal(cache.labels[:3], [0, 1, 2])

    calls = []
    again = build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of,
                                lambda i, b: calls.append(i) or render(i, b), {"sampler": "test"})
    assert calls == [] and again.directory == cache.directory
    other = build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of, render,
                                {"sampler": "other"})
    assert other.directory != cache.directory


def test_interrupted_build_resumes(tmp_path):
    prefix, images, boxes_of, labels_of, render = setup()

    def failing(i, boxes):
        if i == 3:
            raise KeyboardInterrupt
        return render(i, boxes)

    # groups of >= 2 patches: [0], [1, 2], [3], [4]
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of, failing, {}, batch_size=2)
    calls = []
    cache = build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of,
                                lambda i, b: calls.append(i) or render(i, b), {}, batch_size=2)
    assert calls == [3, 4]  # images 0-2 were stored before the interruption
    direct = np.concatenate([extract(prefix, render(i, boxes_of(i))) for i in range(5)])
    np.testing.assert_allclose(np.asarray(cache.features), direct, rtol=1e-5, atol=1e-6)


def test_float16_cache_and_bad_dtype(tmp_path):
    prefix, images, boxes_of, labels_of, render = setup(2)
    cache = build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of, render, {},
                                dtype=np.float16)
    assert cache.features.dtype == np.float16
    # each row holds its own features, rounded to float16
    direct = np.concatenate([extract(prefix, render(i, boxes_of(i))) for i in range(2)])
    np.testing.assert_allclose(np.asarray(cache.features, np.float32), direct, rtol=2e-3, atol=1e-3)
    with pytest.raises(ValueError, match="float32 or float16"):
        build_feature_cache(tmp_path, "fc7", prefix, images, boxes_of, labels_of, render, {},
                            dtype=np.int8)


def test_uint8_pixels_preprocessed_on_the_device_give_the_same_bytes(tmp_path):
    """The cache renders uint8 patches and preprocesses each batch where the network runs:
    the features are those of the float32 inputs preprocessed first, to the bit."""
    from minicnn.data.preprocess import Preprocessing

    prefix, images, boxes_of, labels_of, _ = setup()
    prep = Preprocessing(mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 70.0), channel_order="BGR")

    def pixels(i, boxes):
        rng = np.random.default_rng(200 + i)
        return rng.integers(0, 256, (len(boxes), 3, 16, 16), dtype=np.uint8)

    raw = build_feature_cache(tmp_path / "raw", "fc7", prefix, images, boxes_of, labels_of, pixels, {},
                              batch_size=2, prepare=prep)
    ready = build_feature_cache(tmp_path / "ready", "fc7", prefix, images, boxes_of, labels_of,
                                lambda i, b: prep(pixels(i, b).astype(np.float32)), {}, batch_size=2)
    assert raw.features.tobytes() == ready.features.tobytes()


def test_fingerprint_covers_running_statistics(rng):
    # a frozen BatchNorm2D's output depends on its running statistics: another cache
    from minicnn.transfer.features import network_fingerprint

    net = mc.Sequential([mc.layers.Conv2D(3, 4, 3), mc.layers.BatchNorm2D(4)], ["conv", "bn"],
                        input_shape=(3, 5, 5))
    before = network_fingerprint(net)
    net["bn"].buffers["running_var"] = rng.uniform(0.5, 2.0, 4)
    assert network_fingerprint(net) != before

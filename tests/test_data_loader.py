import threading
import time

import numpy as np
import pytest
from PIL import Image

from minicnn.data.loader import ImageLoader, estimate_mean, ordered_map
from minicnn.data.transforms import ImageTransform
from minicnn.errors import InputError


@pytest.fixture
def images(tmp_path, rng):
    """23 small JPEG and PNG files with labels."""
    paths = []
    for i in range(23):
        path = tmp_path / f"img{i:02d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (10 + i % 4, 12, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths, np.arange(23) % 5


def loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("minicnn-loader")]


def collect(loader, epoch):
    return [(b.images.copy(), b.labels.copy(), b.indices.copy()) for b in loader.epoch(epoch)]


def test_batches_are_the_same_whatever_the_workers(images):
    paths, labels = images
    transform = ImageTransform(8, resize=10, random_crop=True, flip=True)
    runs = [collect(ImageLoader(paths, labels, transform, batch_size=4, shuffle=True, seed=7,
                                workers=w, prefetch=p), epoch=2)
            for w, p in ((0, None), (1, 1), (3, 2), (4, 8))]
    for run in runs[1:]:
        assert len(run) == len(runs[0]) == 6
        for (x, y, i), (x0, y0, i0) in zip(run, runs[0], strict=True):
            assert np.array_equal(x, x0) and np.array_equal(y, y0) and np.array_equal(i, i0)
    first = runs[0]
    visited = np.concatenate([i for _, _, i in first])
    assert sorted(visited.tolist()) == list(range(23))      # every image once per epoch
    assert np.array_equal(np.concatenate([y for _, y, _ in first]), labels[visited])
    assert first[0][0].shape == (4, 3, 8, 8) and first[0][0].dtype == np.float32


def test_epochs_and_seeds_change_order_and_augmentation(images):
    paths, labels = images
    transform = ImageTransform(8, resize=10, random_crop=True, flip=True)
    loader = ImageLoader(paths, labels, transform, batch_size=23, shuffle=True, seed=1, workers=2)
    (x0, _, i0), = collect(loader, 0)
    (x1, _, i1), = collect(loader, 1)
    (x0b, _, i0b), = collect(ImageLoader(paths, labels, transform, batch_size=23, shuffle=True, seed=2), 0)
    assert not np.array_equal(i0, i1) and not np.array_equal(i0, i0b)
    by_index = lambda x, i: x[np.argsort(i)]  # noqa: E731  same images, other crops
    assert not np.array_equal(by_index(x0, i0), by_index(x1, i1))


def test_unshuffled_order_drop_last_and_length(images):
    paths, labels = images
    loader = ImageLoader(paths, labels, ImageTransform(8), batch_size=5, drop_last=True, workers=2)
    assert len(loader) == 4
    batches = collect(loader, 0)
    assert np.array_equal(np.concatenate([i for _, _, i in batches]), np.arange(20))
    assert len(ImageLoader(paths, labels, ImageTransform(8), batch_size=5)) == 5


def test_centre_crop_values_and_mean(tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (6, 4), (10, 20, 30)).save(path)
    loader = ImageLoader([path] * 3, [0, 1, 2], ImageTransform(4), batch_size=2, mean=[10, 20, 30])
    batch = next(iter(loader.epoch(0)))
    assert batch.images.shape == (2, 3, 4, 4) and np.all(batch.images == 0)
    mean = estimate_mean([path] * 5, ImageTransform(4), max_images=3)
    assert mean.shape == (3, 4, 4) and np.allclose(mean.mean(axis=(1, 2)), [10, 20, 30])


def test_bad_image_raises_or_is_skipped_and_reported(images, tmp_path, capsys):
    paths, labels = images
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(open(paths[0], "rb").read()[:200])
    paths = paths[:5] + [str(bad)] + paths[5:]
    labels = np.concatenate([labels[:5], [4], labels[5:]])
    with pytest.raises(InputError, match="broken.jpg"):
        collect(ImageLoader(paths, labels, ImageTransform(8), batch_size=4, workers=2), 0)
    assert not loader_threads()
    loader = ImageLoader(paths, labels, ImageTransform(8), batch_size=4, workers=2, skip_bad=True)
    batches = collect(loader, 0)
    visited = np.concatenate([i for _, _, i in batches])
    assert 5 not in visited and len(visited) == 23
    assert list(loader.skipped) == [str(bad)]
    assert "skipped 1 unreadable images" in capsys.readouterr().err


def test_breaking_off_stops_the_workers(images):
    paths, labels = images
    loader = ImageLoader(paths, labels, ImageTransform(8), batch_size=2, workers=3)
    for _ in loader.epoch(0):
        break
    assert not loader_threads()
    it = loader.epoch(1)
    next(it)
    it.close()
    assert not loader_threads()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while the network computes
        for _ in loader.epoch(2):
            raise KeyboardInterrupt
    assert not loader_threads()


def test_ordered_map_is_bounded_ordered_and_raises():
    started, consumed = [], []

    def job(n):
        started.append(n)
        time.sleep(0.001 * (n % 3))  # finish out of order
        return n * n

    for result in ordered_map(job, range(20), workers=3, prefetch=4):
        consumed.append(result)
        assert len(started) <= len(consumed) + 4  # never more than `prefetch` ahead
    assert consumed == [n * n for n in range(20)]

    def failing(n):
        if n == 5:
            raise RuntimeError("job 5 failed")
        return n

    with pytest.raises(RuntimeError, match="job 5"):
        list(ordered_map(failing, range(10), workers=2))
    assert not loader_threads()


def test_progress_bar_shows_images_per_second(images, capsys):
    paths, labels = images
    loader = ImageLoader(paths, labels, ImageTransform(8), batch_size=4, progress="source epoch 1")
    collect(loader, 0)
    err = capsys.readouterr().err
    assert "source epoch 1" in err and "img" in err

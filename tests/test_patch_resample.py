"""Patches (crop_patches, read_patches; the cpu and cuda crop-resize kernels) against the exact
resize: Pillow's antialiased bilinear resize of exactly each box (``crop_resize``, black
outside the image).

The kernels reproduce Pillow's integer arithmetic, so the patches are expected equal; the
bounds below leave room for another Pillow version's rounding (a 1 here and there) while a
geometric mistake (a half-pixel shift, x and y swapped, a wrong filter width, a wrong pad)
moves the mean difference by several levels on these textured images.
"""

import os

import numpy as np
import pytest
from PIL import Image

from minicnn.data.transforms import _open, crop_patches, crop_resize, load_image, read_patches
from minicnn.transfer.patches import sample_patches

MEAN_BOUND = 0.02  # mean |patch - exact| in 0..255 levels
MAX_BOUND = 1


def photo(rng, width, height):
    """Smooth colour gradients with fine noise: every resampling mistake shows."""
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((width, height),
                                                                                        Image.BICUBIC)
    pixels = np.asarray(coarse).astype(np.int16) + rng.integers(-40, 41, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def exact(image, boxes, size):
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    return np.stack([crop_resize(image, box, size).transpose(2, 0, 1) for box in boxes]).astype(np.int16)


def assert_close_to_exact(patches, reference, what=""):
    diff = np.abs(np.asarray(patches).astype(np.int16) - reference)
    assert diff.mean() <= MEAN_BOUND, f"{what}: mean |diff| {diff.mean():.3f}"
    where = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= MAX_BOUND, f"{what}: max |diff| {diff.max()} at {where}"


# boxes of a 60 x 45 image, resized to 16: each family once
BOXES = {
    "reduce 2.6x, non-integer corners": [[3.7, 2.2, 45.3, 43.8], [10.25, 0.5, 51.75, 42.0]],
    "reduce 1.3x": [[5.5, 7.1, 26.3, 27.9], [30.0, 20.0, 50.8, 40.8]],
    "same size, integer (a plain crop)": [[4, 5, 20, 21], [44, 29, 60, 45]],
    "same size, half-pixel corners": [[4.5, 5.5, 20.5, 21.5]],
    "enlarge 2.3x and 5x": [[12.3, 8.9, 19.3, 15.9], [40.1, 30.7, 43.3, 33.9]],
    "not square": [[0.0, 0.0, 60.0, 45.0], [2.5, 10.0, 40.0, 20.0]],
    "partly outside, left and top": [[-6.4, -3.3, 20.1, 23.2], [-0.5, -0.5, 15.5, 15.5]],
    "partly outside, right and bottom": [[48.2, 33.7, 70.9, 56.4], [50.0, 10.0, 66.0, 26.0]],
    "larger than the image": [[-10.0, -20.0, 70.0, 60.0]],
    "wholly outside": [[-30.0, 5.0, -10.0, 25.0]],
}


@pytest.mark.parametrize("family", list(BOXES))
def test_crop_patches_equal_the_exact_resize_of_each_box(family, rng):
    image = photo(rng, 60, 45)
    boxes = np.array(BOXES[family], dtype=float)
    out = crop_patches(Image.fromarray(image), boxes, 16)
    assert out.shape == (len(boxes), 3, 16, 16) and out.dtype == np.float32
    assert_close_to_exact(out, exact(image, boxes, 16), family)


def test_outside_the_image_is_black(rng):
    image = np.full((20, 30, 3), 200, np.uint8)
    out = crop_patches(image, [[-10.0, 0.0, 10.0, 20.0], [20.0, 10.0, 40.0, 30.0], [-30, 0, -10, 20]], 10)
    assert np.all(out[0, :, :, :4] == 0) and np.all(out[0, :, :, 6:] == 200)   # left half outside
    assert np.all(out[1, :, 6:, :] == 0) and np.all(out[1, :, :4, :4] == 200)  # right, bottom outside
    assert np.all(out[2] == 0)


def test_the_default_sampler_at_network_size(rng):
    """496 patches of a 500 x 375 image at 227: every scale, compared on a spread of them."""
    image = photo(rng, 500, 375)
    boxes = sample_patches(500, 375)
    out = crop_patches(image, boxes, 227, dtype=np.uint8)
    some = np.linspace(0, len(boxes) - 1, 24).round().astype(int)
    assert_close_to_exact(out[some], exact(image, boxes[some], 227), "sampler")
    # float32 holds the same values; splitting the work over threads changes nothing
    np.testing.assert_array_equal(crop_patches(image, boxes[some], 227), out[some].astype(np.float32))
    np.testing.assert_array_equal(crop_patches(image, boxes, 227, dtype=np.uint8, threads=2), out)


def test_boxes_in_full_size_coordinates(rng):
    image = photo(rng, 30, 20)
    boxes = np.array([[2.0, 3.0, 14.0, 15.0], [10.5, 1.5, 29.5, 19.5]])
    halved = crop_patches(Image.fromarray(image), boxes * 2, 8, full_size=(60, 40))
    np.testing.assert_array_equal(halved, crop_patches(image, boxes, 8))
    assert crop_patches(image, np.zeros((0, 4)), 8).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError, match="empty"):
        crop_patches(image, [[3.0, 3.0, 3.0, 9.0]], 8)


def test_concurrent_calls_from_threads(rng):
    """Patches are rendered in a background thread while the network runs: the kernel must
    not use a thread pool that breaks when called from two threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    image = photo(rng, 120, 90)
    boxes = sample_patches(120, 90)
    expected = crop_patches(image, boxes, 24, dtype=np.uint8)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: crop_patches(image, boxes, 24, dtype=np.uint8, threads=2),
                                range(8)))
    for got in results:
        np.testing.assert_array_equal(got, expected)


# --- read_patches and JPEG draft decoding --------------------------------------------------------
def test_read_patches_equal_the_exact_resize_of_the_decoded_image(tmp_path, rng):
    Image.fromarray(photo(rng, 500, 375)).save(tmp_path / "a.jpg", quality=90)
    boxes = sample_patches(500, 375)[::25]
    got = read_patches(tmp_path / "a.jpg", boxes, 227)
    assert got.shape == (len(boxes), 3, 227, 227) and got.dtype == np.float32
    assert_close_to_exact(got, exact(load_image(tmp_path / "a.jpg"), boxes, 227), "read_patches")


@pytest.mark.parametrize("raw", [(800, 600), (1001, 757), (757, 1001)])
@pytest.mark.parametrize("ratio", [1.0, 1.9, 2.0, 2.01, 3.99, 4.0, 7.5, 8.0, 17.0])
def test_draft_decoding_never_leaves_a_patch_fewer_pixels_than_it_has(tmp_path, raw, ratio):
    """Decoded at 1/scale, the smallest box must still span at least ``size`` decoded pixels,
    and the decoded image is ceil(raw / scale) (boxes are divided by the scale)."""
    path = tmp_path / f"{raw[0]}x{raw[1]}.jpg"
    if not os.path.exists(path):
        Image.new("RGB", raw, (90, 120, 150)).save(path, quality=90)
    size = 40
    image, full, scale = _open(path, max_reduction=ratio)
    assert full == raw and scale in (1, 2, 4, 8)
    assert ratio * size / scale >= size  # the box side ratio * size, in decoded pixels
    assert image.size == (-(-raw[0] // scale), -(-raw[1] // scale))
    # the reduction is used: the largest power of two within the ratio, or (when Pillow's
    # rounding of the size asked for falls just short, as for odd sides) the one below it
    best = 8 if ratio >= 8 else 4 if ratio >= 4 else 2 if ratio >= 2 else 1
    assert scale == best or (raw[0] % 2 and scale == best // 2)


def test_read_patches_of_a_draft_decoded_jpeg(tmp_path, rng):
    """Boxes 5x the patch: decoded at 1/4; the patches are the exact resize of the reduced
    image's boxes (divided by 4), and close to the exact resize of the full decode."""
    smooth = Image.fromarray(photo(rng, 8, 6)).resize((800, 600), Image.BICUBIC)
    smooth.save(tmp_path / "big.jpg", quality=95)
    boxes = np.array([[0, 0, 200, 200], [150.5, 80.25, 350.5, 280.25], [600, 400, 800, 600]], float)
    got = read_patches(tmp_path / "big.jpg", boxes, 40)
    reduced, _, scale = _open(tmp_path / "big.jpg", max_reduction=5.0)
    assert scale == 4 and reduced.size == (200, 150)
    assert_close_to_exact(got, exact(reduced, boxes / 4, 40), "draft")
    full = exact(load_image(tmp_path / "big.jpg"), boxes, 40)
    assert np.abs(got - full).mean() < 2.0


# --- the cuda kernel (Numba's simulator without a GPU) -------------------------------------------
def test_cuda_kernel_equals_the_cpu_kernel(rng):
    from cuda_support import cuda_backend

    cuda_backend()  # skips where the cuda backend cannot run
    import minicnn as mc

    image = photo(rng, 13, 9)
    boxes = np.array([[0, 0, 13, 9], [-2.5, 1.25, 4.75, 8.5], [3.3, 2.1, 5.2, 4.0], [10.5, 6.5, 15.0, 11.0],
                      [1, 1, 6, 6]])
    cpu = crop_patches(image, boxes, 5)
    for dtype in (np.float32, np.uint8):
        got = mc.to_numpy(crop_patches(image, boxes, 5, dtype=dtype, device=True))
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, cpu.astype(dtype))
    assert_close_to_exact(cpu, exact(image, boxes, 5), "cuda")


def test_the_cache_cut_on_the_device_is_the_host_cut_cache(tmp_path, monkeypatch):
    """``--crop-on-device``: each image uploaded once, its patches cut by the cuda kernel,
    then preprocessed and passed through C1..FC7 there; the cache's bytes are those of the
    patches cut on the host. Off the cuda backend the setting is refused."""
    import sys

    from cuda_support import cuda_backend

    sys.path.insert(0, os.path.dirname(__file__))
    from method_trees import boxes_tree, source_like

    import minicnn as mc
    from minicnn.errors import InputError
    from minicnn.transfer.pipeline import Transfer, TransferSettings

    voc = boxes_tree(tmp_path / "voc", ["bird", "cat"], 2, 1, size=(40, 30), side=16)
    settings = dict(hidden=4, scales=(1.0, 2.0), stride_fraction=0.5, val_fraction=0.0, cache_dtype="float32")
    mc.set_backend("cpu")
    with pytest.raises(InputError, match="needs --backend cuda"):  # before the patches are sampled
        Transfer(voc, 2007, source_like(16, 4), tmp_path / "refused",
                 TransferSettings(crop_on_device=True, **settings), log=lambda m: None)
    cuda_backend()  # skips where the cuda backend cannot run
    from minicnn.kernels.cuda import crop_resize as device_kernel

    cut_on_device = []
    kernel = device_kernel.crop_resize_boxes_device
    monkeypatch.setattr(device_kernel, "crop_resize_boxes_device",
                        lambda *a, **k: cut_on_device.append(1) or kernel(*a, **k))
    caches = []
    for on_device in (False, True):
        run = Transfer(voc, 2007, source_like(16, 4), tmp_path / f"out{on_device}",
                       TransferSettings(crop_on_device=on_device, **settings),
                       cache_root=tmp_path / f"cache{on_device}", log=lambda m: None)
        run.network_inputs()
        (cache,) = (tmp_path / f"cache{on_device}").iterdir()
        caches.append((cache / "features.npy").read_bytes())
        assert bool(cut_on_device) == on_device  # every image of the second run, none of the first
    assert caches[0] == caches[1]

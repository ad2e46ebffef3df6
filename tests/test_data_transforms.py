import io

import numpy as np
import pytest
from PIL import Image

from minicnn.data.transforms import (
    ImageTransform,
    crop_patches,
    crop_resize,
    image_size,
    load_image,
    read_patches,
    subtract_mean,
    to_rgb,
)
from minicnn.errors import InputError


def random_rgb(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- decoding ------------------------------------------------------------------------------


def test_greyscale_palette_and_16bit_become_rgb(tmp_path, rng):
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    out = np.asarray(load_image(tmp_path / "grey.png"))
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))

    palette = Image.fromarray(random_rgb(rng, 6, 4)).convert("P", palette=Image.ADAPTIVE, colors=8)
    palette.save(tmp_path / "palette.png")
    expected = np.asarray(palette.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(tmp_path / "palette.png")), expected)

    deep = np.array([[0, 65535], [257 * 100, 257 * 7]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.asarray(load_image(tmp_path / "deep.png"))[..., 0].tolist() == [[0, 255], [100, 7]]


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255                   # red everywhere, ...
    rgba[0, 0, 3] = 0                    # ... transparent here,
    rgba[0, 1, 3] = 255                  # opaque here,
    rgba[1, :, 3] = 128                  # half transparent below
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    out = np.asarray(load_image(tmp_path / "alpha.png")).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert out[1, 0, 0] == 255 and abs(out[1, 0, 1] - 127) <= 1

    la = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(to_rgb(la)).tolist() == [[[255, 255, 255], [10, 10, 10]]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as f:
        assert f.mode == "CMYK"
    out = np.asarray(load_image(tmp_path / "cmyk.jpg")).astype(int)
    assert out.shape == (16, 16, 3)
    assert out[8, 8, 0] > 200 and out[8, 8, 1] < 60 and out[8, 8, 2] < 60


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # red at stored top-left
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    image.save(tmp_path / "rot.png", exif=exif)
    assert image_size(tmp_path / "rot.png") == (4, 6)
    out = np.asarray(load_image(tmp_path / "rot.png"))
    assert out.shape == (6, 4, 3)
    assert out[0, 3].tolist() == [255, 0, 0]  # top-left went to top-right


def test_unreadable_files_name_the_file(tmp_path, rng):
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(rng, 64, 64)).save(buffer, "JPEG", quality=95)
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("cut.jpg", "text.jpg", "missing.jpg"):
        with pytest.raises(InputError, match=name):
            load_image(tmp_path / name)


# --- geometry ------------------------------------------------------------------------------


def test_centre_crop_without_resampling_is_a_slice(rng):
    pixels = random_rgb(rng, 6, 8)
    out = ImageTransform(4, resize=6)(Image.fromarray(pixels))
    assert np.array_equal(out, pixels[1:5, 2:6])


def test_random_crop_and_flip_are_slices_of_the_image(rng):
    pixels = random_rgb(rng, 7, 9)
    transform = ImageTransform(5, resize=7, random_crop=True, flip=True)
    seen_offsets, seen_flip = set(), set()
    for seed in range(40):
        out = transform(Image.fromarray(pixels), np.random.default_rng(seed))
        box, mirrored = transform.crop_box(9, 7, np.random.default_rng(seed))
        x, y = int(box[0]), int(box[1])
        expected = pixels[y:y + 5, x:x + 5]
        assert np.array_equal(out, expected[:, ::-1] if mirrored else expected)
        seen_offsets.add((x, y))
        seen_flip.add(mirrored)
    assert seen_flip == {True, False}
    assert {x for x, _ in seen_offsets} == set(range(5)) and {y for _, y in seen_offsets} == set(range(3))


def test_resize_then_crop_matches_two_step_pillow(rng):
    image = Image.fromarray(random_rgb(rng, 30, 40))
    out = ImageTransform(10, resize=15)(image).astype(int)
    resized = np.asarray(image.resize((20, 15), Image.BILINEAR)).astype(int)
    expected = resized[2:12, 5:15]
    assert np.abs(out - expected).max() <= 2


def test_transform_rejects_crop_larger_than_resize():
    with pytest.raises(InputError):
        ImageTransform(32, resize=16)


def test_crop_resize_pads_outside_with_black(rng):
    pixels = random_rgb(rng, 8, 8)
    out = crop_resize(Image.fromarray(pixels), (-2, -1, 4, 5), 6)  # integer box of the output size
    assert np.all(out[:1] == 0) and np.all(out[:, :2] == 0)
    assert np.array_equal(out[1:, 2:], pixels[:5, :4])
    scaled = crop_resize(Image.fromarray(pixels), (-4, 0, 4, 8), 4)  # resampled, half outside
    assert np.all(scaled[:, :1] == 0) and scaled[:, 3].max() > 0


def test_patches_of_output_size_are_exact_crops(rng):
    pixels = random_rgb(rng, 20, 30)
    boxes = np.array([[0, 0, 8, 8], [3, 5, 11, 13], [22, 12, 30, 20], [10, 1, 18, 9],  # shared resize path
                      [2, 2, 7, 7]], dtype=float)                                     # lone size: per box
    out = crop_patches(Image.fromarray(pixels), boxes, 8)
    assert out.shape == (5, 3, 8, 8) and out.dtype == np.float32
    for patch, (x1, y1, x2, y2) in zip(out, boxes[:4].astype(int), strict=False):
        assert np.array_equal(patch, pixels[y1:y2, x1:x2].transpose(2, 0, 1))
    lone = np.asarray(Image.fromarray(pixels).resize((8, 8), Image.BILINEAR, box=(2, 2, 7, 7)))
    assert np.array_equal(out[4], lone.transpose(2, 0, 1))


def test_shared_resize_patches_match_box_resampling(rng):
    # smooth image, so that rounding a corner to the resized grid changes little
    coarse = Image.fromarray(random_rgb(rng, 6, 8)).resize((80, 60), Image.BICUBIC)
    boxes = np.array([[x, y, x + 24.0, y + 24.0] for x in (0, 10, 28, 56) for y in (0, 18, 36)])
    shared = crop_patches(coarse, boxes, 12)
    for patch, box in zip(shared, boxes, strict=True):
        exact = crop_resize(coarse, box, 12).transpose(2, 0, 1).astype(np.float32)
        assert np.abs(patch - exact).mean() < 3.0


def test_patches_outside_image_and_full_size_scaling(rng):
    pixels = random_rgb(rng, 10, 10)
    image = Image.fromarray(pixels)
    boxes = np.array([[-4, 0, 4, 8], [6, 6, 14, 14], [-4, -4, 4, 4], [2, 2, 10, 10]], dtype=float)
    out = crop_patches(image, boxes, 8)
    chw = pixels.transpose(2, 0, 1)
    assert np.all(out[0, :, :, :4] == 0) and np.array_equal(out[0, :, :, 4:], chw[:, :8, :4])
    assert np.all(out[1, :, 4:, :] == 0) and np.array_equal(out[1, :, :4, :4], chw[:, 6:, 6:])
    # boxes given in the coordinates of an image twice as large
    halved = crop_patches(image, boxes * 2, 8, full_size=(20, 20))
    assert np.array_equal(halved, out)


def test_read_patches_decodes_large_jpeg_at_reduced_scale(tmp_path, rng):
    smooth = Image.fromarray(random_rgb(rng, 6, 8)).resize((400, 300), Image.BICUBIC)
    smooth.save(tmp_path / "big.jpg", quality=95)
    boxes = np.array([[0, 0, 200, 200], [100, 50, 300, 250], [200, 100, 400, 300], [50, 0, 250, 200]], float)
    fast = read_patches(tmp_path / "big.jpg", boxes, 16)
    exact = crop_patches(load_image(tmp_path / "big.jpg"), boxes, 16)
    assert fast.shape == (4, 3, 16, 16)
    assert np.abs(fast - exact).mean() < 4.0


def test_subtract_mean_per_channel_and_image(rng):
    batch = rng.random((2, 3, 4, 4)).astype(np.float32)
    channel = np.array([1.0, 2.0, 3.0])
    expected = batch - channel[:, None, None]
    assert np.allclose(subtract_mean(batch.copy(), channel), expected)
    image_mean = rng.random((3, 4, 4))
    assert np.allclose(subtract_mean(batch.copy(), image_mean), batch - image_mean)
    with pytest.raises(InputError):
        subtract_mean(batch, np.zeros((3, 5, 5)))

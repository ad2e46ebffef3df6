"""The stages of ``minicnn transfer``'s feature cache, each timed apart on a sample of a VOC tree.

    python experiments/transfer_stages.py --voc scale/data/VOCdevkit --year 2007 \\
        --weights runs/pre/source.npz --count 200 --out stages.json

For ``--count`` images of the trainval set, in the order the cache reads them: decoding
(Pillow, the whole image), cropping and resizing the default sampler's patches
(``crop_patches``: the Numba kernel, one call per image, uint8 out), the preprocessing
(mean, std, channel order: float32 out), the network's C1..FC7 forward in batches of 256
(the cpu backend's kernel threads), and writing the features to a .npy file as the cache
does (``pwrite`` of each image group's rows, then ``fsync``). Each stage is reported per wall-second and per
CPU-second of this process (all its threads; other jobs on the machine do not change the
latter); the network stage is the only one here that uses more than one core.

The end-to-end run (``minicnn transfer ... --out OUT``) records its own stage times in
OUT/run.json; this script says where that time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


class Clock:
    """Wall and CPU seconds of this process over a ``with`` block, accumulated."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc", required=True, help="devkit root (VOC<year>/ in it)")
    parser.add_argument("--year", type=int, default=2007)
    parser.add_argument("--set", default="trainval", help="image set to sample (default trainval)")
    parser.add_argument("--weights", required=True, help="source network (.npz)")
    parser.add_argument("--count", type=int, default=200, help="images timed (default 200)")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args(argv)

    import minicnn as mc
    from minicnn.data.preprocess import Preprocessing
    from minicnn.data.transforms import crop_patches, load_image
    from minicnn.net import Sequential
    from minicnn.transfer.features import _RowWriter, extract
    from minicnn.transfer.patches import sample_patches
    from minicnn.transfer.pipeline import cache_cut, load_source

    mc.set_backend(args.backend)
    folder = os.path.join(args.voc, f"VOC{args.year}")
    with open(os.path.join(folder, "ImageSets", "Main", f"{args.set}.txt")) as f:
        ids = [line.split()[0] for line in f if line.strip()][: args.count]
    paths = [os.path.join(folder, "JPEGImages", f"{i}.jpg") for i in ids]
    net = mc.models.transfer_net(load_source(args.weights), 2)  # the frozen variant's layers, default cut
    cut = net.names.index(cache_cut(net, "frozen")) + 1
    extractor = Sequential(net.layers[:cut], net.names[:cut])
    preprocessing = Preprocessing.of(net)
    size = int(net.input_shape[-1])

    clocks = {name: Clock() for name in ("decode", "crop", "preprocess", "network", "write")}
    patches = 0
    features = []
    extract(extractor, np.zeros((2, 3, size, size), np.float32))  # compile the kernels first
    group, group_patches = [], 0
    for path in paths:
        with clocks["decode"]:
            image = load_image(path)
            image.load()
        boxes = sample_patches(*image.size)
        with clocks["crop"]:  # uint8, as the cache renders them (preprocessed on the device)
            pixels = crop_patches(image, boxes, size, dtype=np.uint8)
        with clocks["preprocess"]:
            pixels = preprocessing(pixels)
        group.append(pixels)
        group_patches += len(pixels)
        patches += len(pixels)
        if group_patches >= 256 or path == paths[-1]:  # the cache's groups of at least a batch
            with clocks["network"]:
                features.append(extract(extractor, np.concatenate(group), 256))
            group, group_patches = [], 0
    features = np.concatenate(features)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.out or "."))) as tmp:
        path = os.path.join(tmp, "features.npy")  # float16, as --cache-dtype auto at VOC scale
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=features.shape).flush()
        writer = _RowWriter(path)
        with clocks["write"]:
            for start in range(0, len(features), 300):  # about one image group at a time
                writer.write(start, features[start : start + 300])
                writer.sync()
        writer.close()
        written = os.path.getsize(path)

    figures = {"images": len(paths), "patches": patches, "patches_per_image": patches / len(paths),
               "input_size": size, "feature_dim": int(features.shape[1]),
               "backend": mc.backend.get_backend().name, "stages": {}}
    units = {"decode": ("images", len(paths)), "crop": ("patches", patches),
             "preprocess": ("patches", patches), "network": ("patches", patches),
             "write": ("MB", written / 1e6)}
    for name, clock in clocks.items():
        unit, amount = units[name]
        figures["stages"][name] = {"unit": unit, "per_s": amount / clock.wall,
                                   "per_cpu_s": amount / clock.cpu, "wall_s": clock.wall, "cpu_s": clock.cpu}
    print(f"{len(paths)} images, {patches} patches ({patches / len(paths):.0f} per image) at {size} px, "
          f"features {features.shape[1]}-d")
    print("| stage | per second | per CPU-second | seconds |")
    print("|---|---|---|---|")
    for name, f in figures["stages"].items():
        unit = f["unit"]
        print(f"| {name} | {f['per_s']:,.0f} {unit} | {f['per_cpu_s']:,.0f} {unit} | {f['wall_s']:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Heat-map figures that can be published without the photographs they were computed on.

`minicnn localize --heatmaps N` draws each score map over its photograph. A photograph of
someone else's (COCO's come from Flickr, under their owners' licences) may not be
redistributable; this script draws the same figure, from the same functions, over a blank
canvas of the photograph's size: the score maps, the best patches' boxes and the ground
truth's boxes, so that a reader can still check by eye whether the heat lies on the
objects, and open the photograph beside it from its public address.

    python experiments/heatmap_figures.py --weights runs/claims_imagenet/runs/transfer/seed0/transfer.npz \\
        --voc data/COCOVOC --year 2017 --ids 000000030752 000000125870 --out docs/img/heatmaps

writes docs/img/heatmaps/<id>.png for each id (the photograph itself is only read).
"""

import argparse
import os

from PIL import Image

import minicnn as mc
from minicnn.data.transforms import load_image
from minicnn.data.voc import VOCDataset
from minicnn.report import ground_truth_boxes, heatmaps
from minicnn.transfer.localize import image_patch_probabilities

CANVAS = (255, 255, 255)  # white: the heat map's colours read as they do on the colour bar


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="transfer network (.npz written by minicnn transfer)")
    p.add_argument("--voc", required=True, help="VOCdevkit root holding VOC<year>/")
    p.add_argument("--year", type=int, default=2007, help="dataset year: VOC<year>/ under --voc")
    p.add_argument("--ids", nargs="+", required=True, help="image ids of the VOC tree")
    p.add_argument("--top", type=int, default=2, help="classes drawn per image (localize's default: 3)")
    p.add_argument("--per-class", type=int, default=3,
                   help="best patches drawn per class, after non-maximum suppression (localize's default: 5)")
    p.add_argument("--out", required=True, help="folder for <id>.png")
    args = p.parse_args()
    net = mc.Sequential.load(args.weights)
    meta = net.meta
    classes, k = meta["target_classes"], meta.get("k", 5.0)
    dataset = VOCDataset(args.voc, args.year, classes=classes, clip_boxes=True)  # as localize --clip-boxes
    os.makedirs(args.out, exist_ok=True)
    for image_id in args.ids:
        photo = load_image(str(dataset.image_path(image_id)))
        boxes, probs = image_patch_probabilities(net, photo, meta["scales"], meta["stride_fraction"])
        path = os.path.join(args.out, f"{image_id}.png")
        heatmaps(path, Image.new("RGB", photo.size, CANVAS), boxes, probs, classes, k=k, top=args.top,
                 gt_boxes=ground_truth_boxes(dataset.annotation(image_id), classes), per_class=args.per_class)
        print(path)


if __name__ == "__main__":
    main()

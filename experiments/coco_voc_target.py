"""A real, cluttered transfer target: the COCO photographs of two public pools as a VOC tree.

    python experiments/coco_voc_target.py --coco128 coco128_yolo --coco-mini COCO-MINI --out COCOVOC

Reads the repositories ``lightly-ai/coco128_yolo`` (``object_detection/images/{train2017,val2017}``
with their YOLO labels in ``object_detection/labels``: 256 photographs) and ``Obmutescence/COCO-MINI``
(``train2017``, ``val2017``, ``annotations/instances_{train,val}2017.json``: 159), and writes
``OUT/VOC2017`` with the 20 VOC classes (COCO's airplane, motorcycle, couch, dining table,
potted plant and tv renamed): ``trainval`` from coco128, ``test`` from COCO-MINI less the
photographs coco128 also holds, so that no image is in both. Images without a VOC object
are left out (``minicnn convert`` counts them). The two pools are both random draws from
COCO 2017, so the sets follow the same distribution. The tree's year 2017 gives the area
AP metric, as VOC 2010 and later.

The work is done by ``minicnn convert yolo`` and ``minicnn convert coco``; this script only
gathers each pool's two halves into one folder of links (and one JSON) first, in
``OUT/staging``. Rerunning it rewrites the sets (``--fresh``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minicnn.cli import main as minicnn


def _link_all(sources, into: Path, pattern: str, stems=None):
    """Links in ``into`` to the files of ``sources`` (only those whose stem is in ``stems``)."""
    into.mkdir(parents=True, exist_ok=True)
    for folder in sources:
        for path in sorted(folder.glob(pattern)):
            if stems is not None and path.stem not in stems:
                continue
            link = into / path.name
            if not link.exists():
                link.symlink_to(path.resolve())


def coco128_names(config: Path) -> list[str]:
    """The 80 category names of coco128's config.yaml (``  n: name`` lines under names:)."""
    names, inside = {}, False
    for line in config.read_text().splitlines():
        if line.startswith("names:"):
            inside = True
        elif inside and line.startswith("  ") and ":" in line:
            index, name = line.strip().split(":", 1)
            names[int(index)] = name.strip()
        elif inside and line.strip():
            break
    return [names[i] for i in range(len(names))]


def merged_instances(annotations: list[Path], leave_out: set[str]) -> dict:
    """One COCO instances dict from several, without the images named in ``leave_out``."""
    merged = {"images": [], "annotations": [], "categories": None}
    seen = set()
    for path in annotations:
        data = json.loads(path.read_text())
        merged["categories"] = merged["categories"] or data["categories"]
        keep = {i["id"] for i in data["images"] if i["file_name"] not in leave_out and i["id"] not in seen}
        seen |= keep
        merged["images"] += [i for i in data["images"] if i["id"] in keep]
        merged["annotations"] += [a for a in data["annotations"] if a["image_id"] in keep]
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco128", type=Path, required=True, help="checkout of lightly-ai/coco128_yolo")
    parser.add_argument("--coco-mini", type=Path, required=True, help="checkout of Obmutescence/COCO-MINI")
    parser.add_argument("--out", type=Path, required=True, help="devkit root to write (VOC2017/ in it)")
    args = parser.parse_args(argv)
    staging = args.out / "staging"
    halves = [args.coco128 / "object_detection" / "images" / s for s in ("train2017", "val2017")]
    _link_all(halves, staging / "yolo" / "images", "*.jpg")
    # the snapshot lacks a few photographs (files over its size limit): their labels are left out
    _link_all([args.coco128 / "object_detection" / "labels" / s for s in ("train2017", "val2017")],
              staging / "yolo" / "labels", "*.txt", stems={p.stem for h in halves for p in h.glob("*.jpg")})
    names = staging / "coco.names"
    names.write_text("\n".join(coco128_names(args.coco128 / "object_detection" / "config.yaml")) + "\n")
    in_trainval = {p.name for h in halves for p in h.glob("*.jpg")}
    annotations = [args.coco_mini / "annotations" / f"instances_{s}2017.json" for s in ("train", "val")]
    instances = merged_instances(annotations, leave_out=in_trainval)
    (staging / "instances_test.json").write_text(json.dumps(instances))
    _link_all([args.coco_mini / s for s in ("train2017", "val2017")], staging / "coco" / "images", "*.jpg")
    common = ["--out", str(args.out), "--year", "2017"]
    fresh = ["--fresh"] if (args.out / "VOC2017" / "runs").exists() else []
    code = minicnn(["convert", "yolo", "--images", str(staging / "yolo" / "images"),
                    "--labels", str(staging / "yolo" / "labels"), "--names", str(names),
                    *common, "--set", "trainval", *fresh])
    if code:
        return code
    return minicnn(["convert", "coco", "--images", str(staging / "coco" / "images"),
                    "--annotations", str(staging / "instances_test.json"), *common, "--set", "test", *fresh])


if __name__ == "__main__":
    sys.exit(main())

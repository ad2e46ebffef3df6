"""Generate the embedded default dataset (VOC-format scenes and a source image-folder set).

Writes DIR/VOCdevkit/VOC2007 (JPEGImages, Annotations, ImageSets/Main) with scenes of
10 object classes over textured clutter, and DIR/source/<class>/<image>.jpg, an
object-centred classification set of 30 other classes built from the same parts and
textures. The same seed and sizes give byte-identical files; nothing is downloaded.
"""

from __future__ import annotations


def _scene_size(text):
    import argparse

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 160x120), got {text!r}") from None
    return width, height


def add_arguments(p):
    from minicnn.data.synthetic import DataConfig

    d = DataConfig()
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    p.add_argument("--source-per-class", type=int, default=d.source_per_class,
                   help="source images per class (default %(default)s, 30 classes)")
    p.add_argument("--source-size", type=int, default=d.source_size,
                   help="side of the square source images in pixels (default %(default)s)")
    p.add_argument("--trainval", type=int, default=d.trainval,
                   help="scenes in trainval, split half train, half val (default %(default)s)")
    p.add_argument("--test", type=int, default=d.test, help="test scenes (default %(default)s)")
    p.add_argument("--scene-size", type=_scene_size, default=(d.scene_width, d.scene_height),
                   metavar="WxH", help=f"scene size (default {d.scene_width}x{d.scene_height})")
    p.add_argument("--max-objects", type=int, default=d.max_objects,
                   help="most objects per scene (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="processes drawing images (default: CPU count)")
    p.add_argument("--force", action="store_true", help="replace a dataset already in --out")


def run(args):
    from minicnn.data.synthetic import DataConfig, generate

    config = DataConfig(seed=args.seed, source_per_class=args.source_per_class, source_size=args.source_size,
                        trainval=args.trainval, test=args.test, scene_width=args.scene_size[0],
                        scene_height=args.scene_size[1], max_objects=args.max_objects)
    manifest = generate(args.out, config, workers=args.workers, force=args.force, progress=print)
    objects = manifest["objects"]
    print(f"objects per class: {', '.join(f'{k} {v}' for k, v in objects.items())}; "
          f"{manifest['difficult']} difficult")
    return 0

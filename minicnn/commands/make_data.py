"""Generate the embedded default dataset (VOC-format scenes and a source image-folder set).

Writes DIR/VOCdevkit/VOC2007 (JPEGImages, Annotations, ImageSets/Main) with scenes of
10 object classes over textured clutter, and DIR/source/<class>/<image>.jpg, an
object-centred classification set of 30 other classes built from the same parts and
textures. The same seed and sizes give byte-identical files; nothing is downloaded.
DIR/run.json records the run (settings, times, counts) and DIR/log.txt its messages; a DIR
holding a run is refused unless --resume (same settings: the data are made again, the
same bytes) or --fresh (--force) replaces it.
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
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--source-per-class", type=int, default=d.source_per_class,
                   help="source images per class (30 classes)")
    p.add_argument("--source-size", type=int, default=d.source_size,
                   help="side of the square source images in pixels")
    p.add_argument("--trainval", type=int, default=d.trainval,
                   help="scenes in trainval, split half train, half val")
    p.add_argument("--test", type=int, default=d.test, help="test scenes")
    p.add_argument("--scene-size", type=_scene_size, default=f"{d.scene_width}x{d.scene_height}",
                   metavar="WxH", help="scene size in pixels")
    p.add_argument("--max-objects", type=int, default=d.max_objects,
                   help="most objects per scene")
    p.add_argument("--workers", type=int, default=None, help="processes drawing images (default: CPU count)")
    p.add_argument("--fresh", "--force", dest="fresh", action="store_true",
                   help="replace a dataset (and its run record) already in --out")
    p.add_argument("--resume", action="store_true",
                   help="make the dataset of the run recorded in --out again (same settings)")


def run(args):
    import os
    from dataclasses import asdict

    from minicnn.data.synthetic import MANIFEST, DataConfig, generate
    from minicnn.errors import InputError
    from minicnn.runrecord import RECORD_NAME, RunRecord

    # every refusal comes before any work and before the record is written
    out = os.path.abspath(os.path.expanduser(args.out))
    ancestor = out
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"--out {args.out} is a file; name a folder" if ancestor == out else
                         f"--out {args.out}: {ancestor} is a file, not a folder")
    if not args.fresh and not os.path.exists(os.path.join(out, RECORD_NAME)):
        for name in ("VOCdevkit", "source", MANIFEST):  # a dataset made before runs were recorded
            if os.path.exists(os.path.join(out, name)):
                raise InputError(f"{os.path.join(out, name)} exists; choose another --out or replace it "
                                 "with --fresh")
    config = DataConfig(seed=args.seed, source_per_class=args.source_per_class, source_size=args.source_size,
                        trainval=args.trainval, test=args.test, scene_width=args.scene_size[0],
                        scene_height=args.scene_size[1], max_objects=args.max_objects)
    config.check()  # before the record is written
    record = RunRecord(out, command="make-data", settings={**asdict(config), "workers": args.workers},
                       resume=args.resume, fresh=args.fresh)
    with record.stage("generate"):
        manifest = generate(out, config, workers=args.workers, force=args.fresh or record.resumed,
                            progress=record.log)
    objects = manifest["objects"]
    record.log(f"objects per class: {', '.join(f'{k} {v}' for k, v in objects.items())}; "
               f"{manifest['difficult']} difficult")
    record.data(root=out, source_images=manifest["source_images"], scenes=manifest["scenes"], objects=objects,
                difficult=manifest["difficult"])
    record.finish({"voc": os.path.join(out, "VOCdevkit"), "source": os.path.join(out, "source")})
    return 0

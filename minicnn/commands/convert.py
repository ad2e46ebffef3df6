"""Convert a COCO or YOLO detection set into a Pascal VOC devkit tree (a transfer target).

Writes one image set of ROOT/VOC<year>/: JPEGImages/<id>.jpg (JPEGs copied, other images
re-encoded), Annotations/<id>.xml (size, objects), ImageSets/Main/<set>.txt and
<class>_<set>.txt (1 / -1 / 0). Run it once per set (trainval, test, ...) into the same ROOT
and --year: the other sets' files are left as they are. The classes are the 20 of VOC
(COCO's airplane, motorcycle, couch, dining table, potted plant, tv are aeroplane,
motorbike, sofa, diningtable, pottedplant, tvmonitor) unless --classes names others; objects
of other categories are ignored and images left without objects are left out (both
counted). COCO's iscrowd regions become difficult objects.

Boxes: the continuous source box [x, x+w] x [y, y+h] (0-based pixel units; YOLO's
normalized cx cy w h times the image size) becomes VOC's 1-based inclusive
x1 = floor(x)+1, y1 = floor(y)+1, x2 = ceil(x+w), y2 = ceil(y+h), clipped to the image;
an edge within 0.005 pixel of an integer counts as that integer. A box reaching more than
1 pixel outside its image is an error; a box of zero width or height is left out.

--year must be an integer (the tree is VOC<year>, as `evaluate`, `transfer` and `localize`
take it). The AP metric they use by default follows it as for VOC: 11-point (voc07) up to
2009, area from 2010 on; a converted tree gets the metric of its year unless --metric says
otherwise (--year 2017: area).

An image id already in another set of the tree is accepted only with the same image and
annotation (as VOC's train, val and trainval), else refused. The run of each set is
recorded in ROOT/VOC<year>/runs/convert-<set>/ (run.json, log.txt): converting a set again
is refused unless --resume (same settings and inputs: the set is written again) or --fresh
(the set is replaced; its previous images that no other set lists are removed).

Examples:
  minicnn convert coco --images val2017 --annotations annotations/instances_val2017.json \\
      --out COCOdevkit --year 2017 --set test
  minicnn convert yolo --images images/train --labels labels/train --names obj.names \\
      --out mydevkit --year 2024 --set trainval
"""

from __future__ import annotations

COCO_HELP = """Convert a COCO instances JSON and its images into one set of a VOC tree.

Reads --annotations (images: id, file_name, width, height; annotations: id, image_id,
category_id, bbox [x, y, w, h], iscrowd; categories: id, name) and the files of --images.
The width and height of an image in the JSON must be its size. Errors name the file and
the annotation id. Box rounding, classes, sets and run records: `minicnn convert --help`."""

YOLO_HELP = """Convert a YOLO set (images, <stem>.txt label files, a names file) into one set of a VOC tree.

--labels holds <stem>.txt per image of --images, one object a line:
<class index> <cx> <cy> <w> <h>, normalized to the image's size (classes.txt there is
ignored); an image without a label file has no objects, a label file without an image is
an error. --names: one category name a line, line n naming class n - 1 (darknet's
obj.names, coco.names). Errors name the file and the line. Box rounding, classes, sets and
run records: `minicnn convert --help`."""


def add_arguments(p):
    from minicnn.cli import HelpFormatter

    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True,
                               help="the format of the set to convert")
    coco = formats.add_parser("coco", help="COCO instances JSON", description=COCO_HELP,
                              formatter_class=HelpFormatter)
    coco.add_argument("--images", required=True, metavar="DIR", help="folder of the images (file_name)")
    coco.add_argument("--annotations", required=True, metavar="JSON", help="instances_<set>.json")
    yolo = formats.add_parser("yolo", help="YOLO label files", description=YOLO_HELP,
                              formatter_class=HelpFormatter)
    yolo.add_argument("--images", required=True, metavar="DIR", help="folder of the images")
    yolo.add_argument("--labels", required=True, metavar="DIR", help="folder of the <stem>.txt label files")
    yolo.add_argument("--names", required=True, metavar="FILE", help="category names, one a line")
    for sub in (coco, yolo):
        sub.add_argument("--out", required=True, metavar="ROOT",
                         help="devkit root: VOC<year>/ is written in it")
        sub.add_argument("--year", required=True, type=int,
                         help="the tree's year, an integer: ROOT/VOC<year> (default AP metric: voc07 up to "
                              "2009, area from 2010)")
        sub.add_argument("--set", dest="split", required=True, metavar="NAME",
                         help="image set to write: trainval, test, train, val... (letters, digits, '.', '-')")
        sub.add_argument("--classes", default=None,
                         help="comma-separated classes of the tree (default: the 20 VOC classes); a source "
                              "name with spaces is written with underscores (traffic_light)")
        sub.add_argument("--resume", action="store_true",
                         help="write again a set recorded in the tree (same settings and inputs)")
        sub.add_argument("--fresh", action="store_true",
                         help="replace a set the tree holds (its previous images no other set lists are "
                              "removed)")


def run(args):
    import os

    from minicnn.data import convert
    from minicnn.data.voc import VOC_CLASSES
    from minicnn.errors import InputError
    from minicnn.runrecord import RECORD_NAME, RunRecord, open_run, progress_bar

    # settings first, then the whole source read and checked, then the tree; nothing is
    # written before every refusal
    convert.check_set_name(args.split)
    if args.year < 0:
        raise InputError(f"--year {args.year}: a year is a non-negative integer")
    if args.resume and args.fresh:
        raise InputError("--resume and --fresh exclude each other")
    explicit = args.classes is not None
    classes = convert.check_classes([c.strip() for c in args.classes.split(",") if c.strip()]
                                    if explicit else VOC_CLASSES)
    root = os.path.abspath(os.path.expanduser(args.out))
    ancestor = root
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"--out {args.out}: {ancestor} is a file, not a folder")
    voc_dir = os.path.join(root, f"VOC{args.year}")
    if os.path.exists(voc_dir) and not os.path.isdir(voc_dir):
        raise InputError(f"{voc_dir} is a file, not a VOC folder")
    record_dir = os.path.join(voc_dir, "runs", f"convert-{args.split}")
    recorded = os.path.exists(os.path.join(record_dir, RECORD_NAME))
    settings = {"format": args.format, "images": os.path.abspath(args.images), "year": args.year,
                "set": args.split, "classes": list(classes)}
    if args.format == "coco":
        settings["annotations"] = os.path.abspath(args.annotations)
        inputs = [args.annotations]
    else:
        settings.update(labels=os.path.abspath(args.labels), names=os.path.abspath(args.names))
        inputs = [args.names]
    if recorded and not (args.resume or args.fresh):
        RunRecord(record_dir, "convert", settings)  # refuses: the set is recorded
    set_file = os.path.join(voc_dir, "ImageSets", "Main", f"{args.split}.txt")
    if os.path.exists(set_file) and not recorded and not args.fresh:
        raise InputError(f"{voc_dir} already holds set {args.split} ({set_file}), not written by minicnn "
                         "convert; --fresh replaces its set files, or choose another --set")

    if args.format == "coco":
        conv = convert.read_coco(args.images, args.annotations, classes, explicit_classes=explicit)
    else:
        conv = convert.read_yolo(args.images, args.labels, args.names, classes, explicit_classes=explicit)
    source = args.annotations if args.format == "coco" else args.labels
    if not conv.images:
        raise InputError(f"{source}: no image holds an object of the classes ({', '.join(classes)}); "
                         f"{conv.left_out} images, {conv.ignored} objects of other categories")
    plan = convert.plan_set(voc_dir, args.split, conv)

    record = open_run(record_dir, "convert", settings, inputs=inputs, resume=args.resume, fresh=args.fresh)
    if conv.missing_classes:
        record.log(f"warning: no category of {source} gives the classes {', '.join(conv.missing_classes)}; "
                   "they have no objects in this set")
    with record.stage("write"):
        removed = convert.write_set(
            voc_dir, args.split, conv, plan, replace=args.fresh and recorded,
            progress=lambda images: progress_bar(images, desc=f"convert {args.split}", log=record.log))
    objects = conv.objects_per_class()
    reencoded = sum(image.reencode for image in conv.images)
    counts = {"images": len(conv.images), "objects": objects, "difficult": conv.difficult(),
              "left_out_images": conv.left_out, "ignored_objects": conv.ignored,
              "empty_boxes": conv.empty_boxes, "clipped_boxes": conv.clipped, "reencoded": reencoded,
              "shared_with_other_sets": len(plan["shared"]), "removed_files": removed}
    record.data(**counts)
    record.log(f"set {args.split} of {voc_dir}: {len(conv.images)} images, {sum(objects.values())} objects "
               f"({conv.difficult()} difficult); objects per class: "
               f"{', '.join(f'{k} {v}' for k, v in objects.items())}")
    record.log(f"left out: {conv.left_out} images without an object of the classes, {conv.ignored} objects "
               f"of other categories, {conv.empty_boxes} boxes of zero size; {conv.clipped} boxes clipped to "
               f"their image, {reencoded} images re-encoded as JPEG"
               + (f", {len(plan['shared'])} images also in other sets" if plan["shared"] else "")
               + (f"; {removed} files of the set's previous version removed" if removed else ""))
    record.finish({"voc": voc_dir, "set": args.split, "images": len(conv.images),
                   "objects": sum(objects.values())})
    return 0

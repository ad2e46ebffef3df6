"""Localize objects with a transfer network: score maps, heat maps and boxes (docs/method.md 8).

Every patch of an image is scored; each pixel's score for class c is the mean of
p(c|P)^k over the patches covering it, drawn as heat maps over the image. The best patches
of each class after non-maximum suppression are its boxes. With --voc, every image of
--set is processed, the boxes are written as comp3 detection files and evaluated with the
VOC detection protocol (AP table printed) beside the baseline that boxes the whole image
with the image's class score (the mean of p^k over its patches), each mAP with its 95%
interval over the test images resampled with replacement; with --images, the given files
are processed.

Examples:
  minicnn localize --weights runs/demo/transfer/transfer.npz --voc runs/demo/data/VOCdevkit --out runs/loc
  minicnn localize --weights transfer.npz --images street.jpg park.jpg --out runs/loc
"""

from __future__ import annotations


def add_arguments(p):
    from minicnn.backend import BACKENDS
    from minicnn.cli import BACKEND_HELP

    p.add_argument("--weights", required=True, help="transfer network (.npz written by minicnn transfer)")
    p.add_argument("--out", required=True, help="output folder (heatmaps/, boxes.json, results/)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--voc", help="VOCdevkit root: process a whole image set and evaluate detection")
    src.add_argument("--images", nargs="+", help="image files to process")
    p.add_argument("--year", type=int, default=2007, help="dataset year: VOC<year>/ under --voc")
    p.add_argument("--set", default="test", help="image set with --voc")
    p.add_argument("-k", type=float, default=None, help="power of the score maps (default: the network's)")
    p.add_argument("--per-class", type=int, default=5, help="boxes kept per class and image")
    p.add_argument("--nms", type=float, default=0.3, help="IoU above which a weaker box is dropped")
    p.add_argument("--heatmaps", type=int, default=8, help="images drawn as heat maps")
    p.add_argument("--top", type=int, default=3, help="classes drawn per image")
    p.add_argument("--clip-boxes", action="store_true",
                   help="clip annotation boxes reaching outside their image (counted in run.json) "
                        "instead of refusing them (--voc)")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help=BACKEND_HELP)
    p.add_argument("--resume", action="store_true", help="redo the run in OUT with the same settings")
    p.add_argument("--fresh", action="store_true", help="start over in an OUT that holds a run")


def check_settings(args):
    """Every numeric setting in its range, before any work."""
    from minicnn.errors import InputError

    checks = [("-k", args.k, args.k is None or args.k > 0, "> 0"),
              ("--per-class", args.per_class, args.per_class >= 1, ">= 1"),
              ("--nms", args.nms, 0 <= args.nms <= 1, "in [0, 1]"),
              ("--heatmaps", args.heatmaps, args.heatmaps >= 0, ">= 0"),
              ("--top", args.top, args.top >= 1, ">= 1")]
    for name, value, ok, valid in checks:
        if not ok:
            raise InputError(f"{name} must be {valid}, got {value}")


def run(args):
    import os

    import minicnn as mc
    from minicnn.atomic import write_json
    from minicnn.data.transforms import describe_bad, load_image, scan_images
    from minicnn.errors import InputError
    from minicnn.report import ground_truth_boxes, heatmaps
    from minicnn.runrecord import open_run, progress_bar
    from minicnn.transfer.localize import (
        image_patch_probabilities,
        patch_detections,
        voc_boxes,
        whole_image_detections,
    )
    from minicnn.transfer.scores import aggregate_scores

    check_settings(args)
    mc.set_backend(args.backend)
    net = mc.Sequential.load(args.weights)
    meta = net.meta
    if "target_classes" not in meta:
        raise InputError(f"{args.weights}: not a transfer network (no target_classes in its metadata)")
    classes, k = meta["target_classes"], args.k or meta.get("k", 5.0)
    if args.voc and meta.get("task") == "action":
        raise InputError(f"{args.weights}: an action network has no detection task to evaluate with "
                         "--voc; draw its heat maps with --images")
    if args.voc:
        from minicnn.data.voc import VOCDataset

        dataset = VOCDataset(args.voc, args.year, classes=classes, clip_boxes=args.clip_boxes)
        ids = dataset.image_ids(args.set)
        paths = [str(dataset.image_path(i)) for i in ids]
        for image_id in ids:  # every annotation checked before any work (evaluation reads them last)
            dataset.annotation(image_id)
    else:
        ids = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
        paths = list(args.images)
    bad = scan_images(paths, decode=True)  # decoded: a file cut after its header stops no run half-way
    if bad:
        raise InputError(describe_bad(bad, remedy="fix or remove them"))
    record = open_run(args.out, "localize", {k: v for k, v in vars(args).items() if not k.startswith("_")},
                      inputs=[args.weights, *(args.images or [])], resume=args.resume, fresh=args.fresh,
                      outputs=("boxes.json",))
    os.makedirs(os.path.join(args.out, "heatmaps"), exist_ok=True)
    detections = {c: ([], [], []) for c in classes}  # image ids, scores, VOC boxes
    whole = {c: ([], [], []) for c in classes}       # the baseline: the whole image, its class score
    for n, (image_id, path) in enumerate(progress_bar(list(zip(ids, paths, strict=True)), desc="localize",
                                                      log=record.log)):
        image = load_image(path)
        boxes, probs = image_patch_probabilities(net, image, meta["scales"], meta["stride_fraction"])
        found = patch_detections(boxes, probs, len(classes), args.per_class, args.nms)
        image_scores = aggregate_scores(probs, k)[:len(classes)]
        baseline = whole_image_detections(image.width, image.height, image_scores)
        for target, pairs in ((detections, found), (whole, baseline)):
            for c, (scores, kept) in zip(classes, pairs, strict=True):
                target[c][0].extend([image_id] * len(scores))
                target[c][1].extend(scores.tolist())
                target[c][2].extend(voc_boxes(kept).tolist())
        if n < args.heatmaps:
            truth = ground_truth_boxes(dataset.annotation(image_id), classes) if args.voc else ()
            heatmaps(os.path.join(args.out, "heatmaps", f"{image_id}.png"), image, boxes, probs, classes, k=k,
                     top=args.top, gt_boxes=truth, per_class=args.per_class, nms_iou=args.nms)
    write_json(os.path.join(args.out, "boxes.json"),
               {c: [{"image": i, "score": s, "box": b} for i, s, b in zip(*d, strict=True)]
                for c, d in detections.items()})
    record.data(root=os.path.abspath(args.voc) if args.voc else None, images=len(ids),
                **({"clipped_boxes": dataset.clipped} if args.voc else {}))
    if args.voc and dataset.clipped:
        record.log(f"warning: {dataset.clipped} annotation boxes reached outside their image and were "
                   "clipped to it (--clip-boxes)")
    record.log(f"heat maps: {args.out}/heatmaps; boxes: {args.out}/boxes.json")
    if args.voc:
        from minicnn.evaluate import detection_map_interval, evaluate_voc, result_filename, write_det_results
        from minicnn.report import ap_table

        figures = {}
        for name, found, folder in (("detection", detections, "results"),
                                    ("whole image", whole, "results-whole-image")):
            results = os.path.join(args.out, folder, f"VOC{args.year}", "Main")
            for c, (image_ids, scores, boxes) in found.items():
                write_det_results(os.path.join(results, result_filename("comp3", "det", args.set, c)),
                                  image_ids, scores, boxes)
            report = evaluate_voc(dataset, args.set, "det", results)
            figures[name] = {"map": report.map, "ap": {c: r.ap for c, r in report.results.items()},
                             "interval": detection_map_interval(dataset, report)}
        record.log(ap_table(figures, list(report.results), report.metric))
        for name, figure in figures.items():
            low, high = figure["interval"]
            if low is not None:
                record.log(f"{name}: mAP {100 * figure['map']:.2f}, 95% interval {100 * low:.2f} - "
                           f"{100 * high:.2f} ({len(ids)} images resampled with replacement, 1000 draws)")
        record.finish({**figures["detection"], "whole_image": figures["whole image"]})
    else:
        record.finish({"images": len(ids)})
    from minicnn.report_html import write_report_html  # report.html beside report.md
    write_report_html(args.out)
    return 0

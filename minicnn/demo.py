"""The main job on the embedded default data: generate, pretrain, transfer, compare.

    make-data ──> source/ (30 classes) ──> pretrain a small AlexNet-style network
              └─> VOCdevkit/VOC2007 (10 classes) ──> transfer (frozen C1..FC7, FCa/FCb)
                                                  ├─> scratch (same network, random start)
                                                  └─> whole-image baseline (one patch per image)

Writes OUT/summary.json ({"map": {variant: mAP}, "ap": {variant: {class: AP}}, "seconds"}),
OUT/report.md, precision/recall and training plots under OUT/plots, and heat maps of
patch scores over test images under OUT/heatmaps. Every stage resumes from what an
earlier run with the same settings left (data, checkpoints, feature caches).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from minicnn import backend, distributed
from minicnn.atomic import write_json, write_text
from minicnn.data.synthetic import DataConfig, generate, is_generated
from minicnn.pretrain import PretrainSettings, pretrain
from minicnn.report import ap_table, heatmaps
from minicnn.transfer.pipeline import Transfer, TransferSettings, load_source
from minicnn.transfer.train import TrainSettings


@dataclass
class DemoSettings:
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainSettings = field(default_factory=lambda: PretrainSettings(
        model="small", input_size=32, resize=36, channels=(32, 64, 96, 96, 64), hidden=256,
        epochs=10, batch_size=64, lr=0.01))
    # Sized for 15 minutes on 2 cores: 142 patches per image (the seven largest scales of
    # the paper, stride half a side) instead of ~500, and 30% of trainval held out.
    transfer: TransferSettings = field(default_factory=lambda: TransferSettings(
        hidden=256, scales=(1.0, 1.3, 1.6, 2.0, 2.4, 2.8, 3.2), stride_fraction=0.5, val_fraction=0.3,
        train=TrainSettings(epochs=8, batch_size=64, lr=0.01)))
    scratch_epochs: int = 10
    variants: tuple = ("transfer", "scratch", "whole-image")
    heatmap_images: int = 4

    @classmethod
    def quick(cls):
        """A tiny version (seconds) for tests and smoke runs."""
        return cls(data=DataConfig(source_per_class=6, trainval=8, test=6),
                   pretrain=PretrainSettings(model="small", input_size=32, resize=36,
                                             channels=(8, 16, 16, 16, 16), hidden=32, epochs=1,
                                             batch_size=32, workers=1),
                   transfer=TransferSettings(hidden=32, stride_fraction=0.5, scales=(1.0, 2.0, 3.0),
                                             train=TrainSettings(epochs=1, batch_size=64)),
                   scratch_epochs=1, heatmap_images=2)


VARIANT_OF = {"transfer": "frozen", "scratch": "scratch", "whole-image": "whole-image",
              "update-fc67": "update-fc67", "finetune": "finetune"}


def run_demo(out, settings: DemoSettings, record, resume=True):
    """Run every stage, timed and logged through ``record`` (a
    :class:`~minicnn.runrecord.RunRecord` of ``out``); returns the summary dict written to
    OUT/summary.json (None in the ranks other than 0 under MPI). Stage times are those of the
    runs that computed each stage: a rerun of a finished demo (the same settings: it reuses
    every stage) keeps them as they are; a resumed unfinished one adds its time to each stage."""
    log = record.log
    stage = (lambda name: contextlib.nullcontext()) if record.was_finished else record.stage
    root = distributed.is_root()  # under MPI every rank computes every stage; rank 0 alone writes
    if root:
        os.makedirs(out, exist_ok=True)
    data_dir = os.path.join(out, "data")

    with stage("data"):
        if is_generated(data_dir, settings.data):
            log(f"[1/4] data: reusing {data_dir}")
        else:
            log(f"[1/4] data: generating into {data_dir}")
            if root:
                generate(data_dir, settings.data, force=True, progress=log)
        distributed.barrier()  # the others read what rank 0 generated

    with stage("pretrain"):
        log("[2/4] pretraining the source network on the generated source set")
        pre = pretrain(os.path.join(data_dir, "source"), os.path.join(out, "pretrain"), settings.pretrain,
                       resume=resume, log=log)
    source = load_source(pre["weights"])

    summaries, results = {}, {}
    for n, name in enumerate(settings.variants):
        with stage(name):
            log(f"[3/4] variant {name} ({n + 1}/{len(settings.variants)})")
            ts = replace(settings.transfer, variant=VARIANT_OF[name])
            if name == "scratch":
                ts = replace(ts, train=replace(ts.train, epochs=settings.scratch_epochs))
            run = Transfer(os.path.join(data_dir, "VOCdevkit"), 2007, source, os.path.join(out, name), ts,
                           cache_root=os.path.join(out, "cache"), log=log)
            results[name] = run.run(resume=resume)
            summaries[name] = results[name].summary

    log("[4/4] report")
    classes = run.classes
    metric = settings.transfer.train.metric
    table = ap_table(summaries, classes, metric)
    log(table)
    if not root:
        return None
    plots = os.path.join(out, "plots")
    _plots(plots, pre["history"], results)
    heat = _heatmaps(os.path.join(out, "heatmaps"), results.get("transfer") or results[settings.variants[0]],
                     run.dataset, classes, settings.heatmap_images, settings.transfer.train.k)
    stages = dict(record["seconds"])
    summary = {
        "map": {name: s.get("map") for name, s in summaries.items()},
        "ap": {name: s.get("ap") for name, s in summaries.items()},
        "seconds": sum(stages.values()),
        "stages": stages,
        "backend": backend.get_backend().name,
        "pretrain": pre["history"][-1] if pre["history"] else None,
        "settings": asdict(settings),
    }
    write_json(os.path.join(out, "summary.json"), summary)
    _markdown(os.path.join(out, "report.md"), summary, table, heat)
    return summary


def _plots(folder, pre_history, results):
    from minicnn.evaluate.challenge import plot_report
    from minicnn.plots import plot_training

    os.makedirs(folder, exist_ok=True)
    if pre_history:
        plot_training(os.path.join(folder, "pretrain.png"), {"source network": pre_history},
                      metric=["val_top1", "val_top5"], metric_label="validation accuracy",
                      title="source network: training loss and validation accuracy")
    histories = {name: r.summary["history"] for name, r in results.items()}
    plot_training(os.path.join(folder, "training.png"), histories, metric="val_map",
                  metric_label="validation mAP", title="adaptation: training loss and validation mAP")
    for name, result in results.items():
        if result.report is not None:
            plot_report(result.report, os.path.join(folder, name), run=name)


def _heatmaps(folder, result, dataset, classes, count, k):
    """Heat maps of the first ``count`` test images, with their ground truth; the file names."""
    from minicnn.data.transforms import load_image
    from minicnn.report import ground_truth_boxes

    p, items = result.patches, result.patches.items["test"]
    if result.summary["variant"] == "whole-image":
        return []
    names = []
    for image_id in items.keys[:count]:
        i = p.image_ids.index(image_id)
        mine = np.flatnonzero(p.patch_image[items.patches] == i)
        name = f"{image_id}.png"
        heatmaps(os.path.join(folder, name), load_image(p.paths[i]), p.patch_boxes[items.patches[mine]],
                 result.test_probs[mine], classes, k=k,
                 gt_boxes=ground_truth_boxes(dataset.annotation(image_id), classes))
        names.append(name)
    return names


def _markdown(path, summary, table, heatmap_files):
    lines = ["# minicnn demo", "",
             "Transfer of mid-level features (Oquab et al., CVPR 2014) on the generated default data.", "",
             "```", table, "```", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in summary["stages"].items()]
    lines += [f"| total | {summary['seconds']:.1f} |", ""]
    if summary.get("pretrain"):
        p = summary["pretrain"]
        lines += [f"Source network after {p['epoch']} epochs: validation top-1 {p['val_top1']:.3f}, "
                  f"top-5 {p['val_top5']:.3f}.", ""]
    lines += ["![adaptation training](plots/training.png)", "", "![source training](plots/pretrain.png)", ""]
    lines += [f"![AP per class, {name}](plots/{name}/cls_summary.png)" for name in summary["map"]]
    lines += ["", "Precision/recall curves per class: `plots/<variant>/cls_<class>_pr.png`.", ""]
    lines += [f"![heat map {name}](heatmaps/{name})" for name in heatmap_files]
    write_text(path, "\n".join(lines) + "\n")

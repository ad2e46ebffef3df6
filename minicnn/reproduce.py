"""``minicnn reproduce CONFIG.toml``: a table of the paper (or a claim) run end to end, with
confidence intervals, against the paper's numbers.

A config names the data, the source networks, the transfer settings, the runs and, where
the paper gives them, the paper's numbers::

    title = "Claim 1: transfer beats scratch (generated data)"
    seeds = [0, 1, 2]                      # transfer seeds; each run is trained once per seed
    [data]
    generated = { trainval = 250, test = 250 }   # minicnn make-data's sizes; or:
    # voc = "VOCdevkit"  year = 2007  train_set = "trainval"  test_set = "test"  classes = [...]
    [sources.pre1000]                      # pretrain settings (data: a folder, or "generated";
    data = "generated"  model = "small"    # classes: a class list, e.g. of minicnn source-classes;
    input_size = 32  epochs = 10           # list: a list file of <class>/<image> paths)
    # weights = "bvlc_alexnet.npz"         # or a network imported with minicnn import-weights
    [transfer]                             # settings every run shares (TransferSettings)
    hidden = 256  scales = [1.0, 1.3, 1.6, 2.0]
    [transfer.train]
    epochs = 8
    [[runs]]
    name = "transfer"  source = "pre1000"  variant = "frozen"
    [[runs]]
    name = "scratch"  source = "pre1000"  variant = "scratch"  train = { epochs = 10 }
    [paper.transfer]                       # optional: the paper's mAP and per-class APs, in %
    map = 77.7
    [report]                               # optional
    min_test_positives = 5                 # classes with fewer positive test items: left out
    k_curve = [1, 2, 5, 10, "max"]         # mAP of every run against the aggregation's k

Every stage resumes (the data, the sources' and runs' checkpoints, the feature caches), so
a killed ``reproduce`` continues where it stopped. The report gives, per run and class, the
AP averaged over seeds with a 95% interval from a bootstrap over the test items (images or
persons: resampled with replacement, 1000 times, AP recomputed), the spread over seeds,
and the paper's number beside it. A class with fewer than ``min_test_positives`` positive
test items has no meaningful AP on a small set: it is named in the report and left out of
every mAP (it is still trained: its patches are not background). ``k_curve`` rescores each
run's test patches with each k of the image score (mean of p^k; "max": the best patch),
without training again (docs/method.md section 6, claim 2). ``--quick`` shrinks every
size to check every stage in seconds. Under ``mpiexec -n N`` every stage runs data-parallel
(as ``minicnn pretrain`` and ``minicnn transfer`` do) and rank 0 writes the report.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from minicnn import distributed
from minicnn.atomic import write_json, write_text
from minicnn.data.folders import read_class_list
from minicnn.data.synthetic import DataConfig, generate, is_generated
from minicnn.errors import InputError
from minicnn.evaluate.items import evaluate_items
from minicnn.pretrain import PretrainSettings, pretrain
from minicnn.transfer.pipeline import Transfer, TransferSettings, load_source
from minicnn.transfer.scores import score_items
from minicnn.transfer.train import TrainSettings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TOP_KEYS = {"title", "seeds", "data", "sources", "transfer", "runs", "paper", "bootstrap", "report"}
REPORT_KEYS = {"min_test_positives", "k_curve"}
SOURCE_INPUTS = ("data", "classes", "list")  # a source's files; the rest are PretrainSettings
QUICK_DATA = {"source_per_class": 6, "trainval": 8, "test": 6}
QUICK_SOURCE = {"model": "small", "input_size": 32, "resize": 36, "channels": [8, 16, 16, 16, 16],
                "hidden": 24, "epochs": 1, "batch_size": 32, "workers": 1}
QUICK_TRANSFER = {"hidden": 16, "scales": [1.0, 2.0], "stride_fraction": 0.5}


def read_config(path, quick=False) -> dict:
    """The config as a dict, every key checked (unknown ones named), ``quick`` sizes applied."""
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a TOML file ({e})") from None
    unknown = set(config) - TOP_KEYS
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; the keys are "
                         f"{', '.join(sorted(TOP_KEYS))}")
    for key in ("data", "sources", "runs"):
        if key not in config:
            raise InputError(f"{path}: no [{key}]")
    _check_types(config, path)
    data = config["data"]
    if ("generated" in data) == ("voc" in data):
        raise InputError(f"{path}: [data] needs either generated = {{...}} or voc = \"VOCdevkit\"")
    names = [r.get("name") for r in config["runs"]]
    if None in names or len(set(names)) != len(names):
        raise InputError(f"{path}: every [[runs]] needs a name of its own (got {names})")
    for run in config["runs"]:
        if run.get("source") not in config["sources"]:
            raise InputError(f"{path}: run {run['name']!r} names source {run.get('source')!r}; the sources "
                             f"are {', '.join(config['sources'])}")
    _check_report(config.get("report", {}), path)
    if quick:
        if "generated" in data:
            data["generated"] = {**data["generated"], **QUICK_DATA}
        for source in config["sources"].values():
            if "weights" not in source:
                source.update(QUICK_SOURCE)
        config["transfer"] = {**config.get("transfer", {}), **QUICK_TRANSFER}
        config["transfer"]["train"] = {**config["transfer"].get("train", {}), "epochs": 1, "batch_size": 32}
        for run in config["runs"]:
            run.pop("train", None)
        config["seeds"] = config.get("seeds", [0])[:2]
        config["bootstrap"] = 50
    # every setting checked now, before any work; a bad value is named with the file
    checks = [(f"run {r['name']!r}", lambda r=r: transfer_settings(config, r, seed=0))
              for r in config["runs"]]
    checks += [(f"source {name!r}", lambda s=s: _pretrain_settings(s, ""))
               for name, s in config["sources"].items() if "weights" not in s]
    if "generated" in data:
        checks.append(("[data] generated", lambda: DataConfig(**_fields(DataConfig, data["generated"], ""))))
    for where, check in checks:
        try:
            check()
        except (InputError, TypeError, ValueError) as e:  # settings given values of the wrong type
            raise InputError(f"{path}: {where}: {str(e).removeprefix(': ')}") from None
    return config


def _check_types(config, path):
    """Each table, array and value of the config has the type its readers expect, so that a
    config of the wrong shape is refused naming its key, not met as a TypeError later."""
    def need(value, kind, what):
        kinds = {"table": dict, "array": list, "string": str, "integer": int}
        if not isinstance(value, kinds[kind]) or (kind == "integer" and isinstance(value, bool)):
            raise InputError(f"{path}: {what} must be a{'n' if kind[0] in 'ai' else ''} {kind}, "
                             f"got {type(value).__name__}")

    for key in ("data", "sources", "transfer", "paper", "report"):
        if key in config:
            need(config[key], "table", f"[{key}]")
    data = config["data"]
    if "generated" in data:
        need(data["generated"], "table", "[data] generated")
    if "voc" in data:
        need(data["voc"], "string", "[data] voc")
    if "year" in data:
        need(data["year"], "integer", "[data] year")
    if isinstance(config.get("transfer", {}).get("train", {}), dict) is False:
        raise InputError(f"{path}: [transfer.train] must be a table")
    for name, source in config["sources"].items():
        need(source, "table", f"[sources.{name}]")
        for key in SOURCE_INPUTS + ("weights",):
            if key in source:
                need(source[key], "string", f"[sources.{name}] {key}")
    need(config["runs"], "array", "[[runs]]")
    for run in config["runs"]:
        need(run, "table", "each [[runs]]")
        for key in ("name", "source"):
            if key in run:
                need(run[key], "string", f"[[runs]] {key}")
        if "train" in run:
            need(run["train"], "table", f"[[runs]] {run.get('name', '?')!r} train")
    if "seeds" in config:
        need(config["seeds"], "array", "seeds")
        for seed in config["seeds"]:
            need(seed, "integer", "each of seeds")
            if seed < 0:
                raise InputError(f"{path}: seeds must be integers >= 0, got {seed}")
        if not config["seeds"]:
            raise InputError(f"{path}: seeds is empty")
    if "bootstrap" in config:
        need(config["bootstrap"], "integer", "bootstrap")
        if config["bootstrap"] < 1:
            raise InputError(f"{path}: bootstrap must be an integer >= 1, got {config['bootstrap']}")
    if "title" in config:
        need(config["title"], "string", "title")


def _check_report(report, path):
    unknown = set(report) - REPORT_KEYS
    if unknown:
        raise InputError(f"{path}: unknown key(s) in [report]: {', '.join(sorted(unknown))}; the keys are "
                         f"{', '.join(sorted(REPORT_KEYS))}")
    least = report.get("min_test_positives", 1)
    if not isinstance(least, int) or isinstance(least, bool) or least < 1:
        raise InputError(f"{path}: [report] min_test_positives must be an integer >= 1 (got {least!r})")
    for k in report.get("k_curve", []):
        number = isinstance(k, (int, float)) and not isinstance(k, bool)
        if k != "max" and not (number and 0 < k < float("inf")):
            raise InputError(f"{path}: [report] k_curve takes numbers > 0 and \"max\" (got {k!r})")


def k_value(k) -> float:
    """A k of the curve as the aggregation takes it ("max": infinity, the best patch)."""
    return float("inf") if k == "max" else float(k)


def _fields(cls, given, where):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(given) - known
    if unknown:
        raise InputError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    return given


def _pretrain_settings(source, where):
    given = {k: v for k, v in source.items() if k not in SOURCE_INPUTS}
    return PretrainSettings(**_fields(PretrainSettings, given, where))


def transfer_settings(config, run, seed, where="") -> TransferSettings:
    """The TransferSettings of one run and seed: [transfer], then the run's own keys."""
    shared = dict(config.get("transfer", {}))
    train = {**shared.pop("train", {}), **run.get("train", {}), "seed": seed}
    own = {k: v for k, v in run.items() if k not in ("name", "source", "train")}
    settings = {**shared, **own}
    _fields(TransferSettings, settings, where)
    return TransferSettings(**settings, train=TrainSettings(**_fields(TrainSettings, train, where)))


def run_reproduce(config, out, record):
    """Every stage, then the report; returns the report dict (also OUT/report.json)."""
    log = record.log
    data = config["data"]
    if "generated" in data:
        folder = os.path.join(out, "data")
        data_config = DataConfig(**_fields(DataConfig, data["generated"], "[data] generated"))
        with record.stage("data"):
            if distributed.is_root() and not is_generated(folder, data_config):
                generate(folder, data_config, force=True, progress=log)
            distributed.barrier()  # under MPI: rank 0 generated the data the others read
        voc, year, generated_source = os.path.join(folder, "VOCdevkit"), 2007, os.path.join(folder, "source")
    else:
        voc, year, generated_source = data["voc"], int(data.get("year", 2007)), None
    sources = {}
    for name, source in config["sources"].items():
        with record.stage(f"source {name}"):
            if "weights" in source:
                sources[name] = load_source(source["weights"])
                continue
            where = source.get("data")
            if where == "generated":
                if generated_source is None:
                    raise InputError(f"source {name!r}: data = \"generated\" needs [data] generated")
                where = generated_source
            log(f"source {name}: pretraining on {where}")
            classes = read_class_list(source["classes"]) if "classes" in source else None
            result = pretrain(where, os.path.join(out, "sources", name), _pretrain_settings(source, name),
                              list_file=source.get("list"), resume=True, log=log, classes=classes)
            sources[name] = load_source(result["weights"])
    runs = {}
    for run in config["runs"]:
        for seed in config.get("seeds", [0]):
            with record.stage(f"run {run['name']}"):
                log(f"run {run['name']} seed {seed}")
                settings = transfer_settings(config, run, seed)
                transfer = Transfer(voc, year, sources[run["source"]], os.path.join(out, "runs", run["name"],
                                                                                 f"seed{seed}"),
                                    settings, classes=data.get("classes"),
                                    cache_root=os.path.join(out, "cache"), log=log)
                runs.setdefault(run["name"], []).append((seed, transfer, transfer.run(resume=True)))
    report = summarize(config, runs)
    if distributed.is_root():  # under MPI every rank ran every stage; rank 0 alone writes
        write_json(os.path.join(out, "report.json"), report)
        write_text(os.path.join(out, "report.md"), markdown(report))
        _plots(os.path.join(out, "plots"), report)
    return report


def bootstrap_map(scores, truth, classes, metric, draws=1000, seed=0):
    """(2.5, 97.5) percentiles of the mAP over test items resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        pick = rng.integers(0, len(truth), len(truth))
        report = evaluate_items(scores[pick], truth[pick], classes, metric)
        if report.results:
            values.append(report.map)
    return [float(v) for v in np.percentile(values, [2.5, 97.5])] if values else [None, None]


def reported_classes(truth, classes, least) -> tuple[list[int], dict]:
    """(indices of the classes with at least ``least`` positive test items, {left-out class:
    its positives})."""
    positives = (np.asarray(truth) == 1).sum(axis=0)
    kept = [c for c in range(len(classes)) if positives[c] >= least]
    return kept, {classes[c]: int(positives[c]) for c in range(len(classes)) if positives[c] < least}


def summarize(config, runs) -> dict:
    """Per run: mean AP per class and mAP over seeds (over the reported classes), their
    spread, the bootstrap interval of each seed's mAP pooled, the mAP against k where asked,
    and the paper's numbers where given; every figure in percent."""
    paper, options = config.get("paper", {}), config.get("report", {})
    least, ks = options.get("min_test_positives", 1), options.get("k_curve", [])
    out = {"title": config.get("title", ""), "seeds": config.get("seeds", [0]), "runs": {},
           "min_test_positives": least, "classes_left_out": {}}
    for name, seeded in runs.items():
        maps, aps, intervals, curve = [], {}, [], {str(k): [] for k in ks}
        for seed, transfer, result in seeded:
            items = transfer.patches.items["test"]
            if result.report is None or items.truth is None:
                continue
            kept, left_out = reported_classes(items.truth, transfer.classes, least)
            out["classes_left_out"].update(left_out)
            names, truth = [transfer.classes[c] for c in kept], items.truth[:, kept]
            metric = result.report.metric
            report = evaluate_items(result.test_scores[:, kept], truth, names, metric)
            maps.append(100 * report.map)
            for c, r in report.results.items():
                aps.setdefault(c, []).append(100 * r.ap)
            for k in ks:
                scores = score_items(result.test_probs, items, k_value(k))[:, kept]
                curve[str(k)].append(100 * evaluate_items(scores, truth, names, metric).map)
            low, high = bootstrap_map(result.test_scores[:, kept], truth, names, metric,
                                      draws=config.get("bootstrap", 1000), seed=seed)
            intervals.append([None if v is None else 100 * v for v in (low, high)])
        finite = [i for i in intervals if i[0] is not None]
        out["runs"][name] = {
            "map": float(np.mean(maps)) if maps else None,
            "map_per_seed": maps,
            "map_seed_spread": float(np.std(maps)) if len(maps) > 1 else None,
            "map_interval": [float(np.mean([i[0] for i in finite])), float(np.mean([i[1] for i in finite]))]
            if finite else None,
            "ap": {c: float(np.mean(v)) for c, v in aps.items()},
            "k_curve": {k: float(np.mean(v)) for k, v in curve.items() if v},
            "k_curve_spread": {k: float(np.std(v)) for k, v in curve.items() if len(v) > 1},
            "metric": seeded[0][2].report.metric if seeded[0][2].report else None,
            "paper": paper.get(name, {}),
        }
    return out


def markdown(report) -> str:
    """The report as a Markdown table: ours (95% interval, seed spread) against the paper."""
    lines = [f"# {report['title'] or 'minicnn reproduce'}", "",
             f"Seeds {report['seeds']}; AP in % of the test items, averaged over seeds; the interval is a "
             "bootstrap over test items (95%), the spread the standard deviation over seeds.", "",
             "| run | mAP ours | 95% interval | spread over seeds | mAP paper |", "|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        low, high = r["map_interval"] or (None, None)
        interval = "–" if low is None else f"{low:.1f} – {high:.1f}"
        spread = "–" if r["map_seed_spread"] is None else f"{r['map_seed_spread']:.2f}"
        ours = "–" if r["map"] is None else f"{r['map']:.1f}"
        lines.append(f"| {name} | {ours} | {interval} | {spread} | {r['paper'].get('map', '–')} |")
    left_out = report.get("classes_left_out", {})
    if left_out:
        lines += ["", f"Left out of every mAP and of the per-class table: the classes with fewer than "
                  f"{report['min_test_positives']} positive test items ("
                  + ", ".join(f"{c} {n}" for c, n in sorted(left_out.items())) + ")."]
    ks = next((list(r["k_curve"]) for r in report["runs"].values() if r.get("k_curve")), [])
    if ks:
        lines += ["", "mAP against the k of the image score (mean of p^k over the patches; max: the best "
                  "patch), each run's test patches rescored:", "",
                  "| run | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for name, r in report["runs"].items():
            if r.get("k_curve"):
                lines.append(f"| {name} | " + " | ".join(f"{r['k_curve'][k]:.1f}" for k in ks) + " |")
    classes = sorted({c for r in report["runs"].values() for c in r["ap"]})
    if classes:
        names = list(report["runs"])
        lines += ["", "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for c in classes:
            cells = []
            for name in names:
                r = report["runs"][name]
                ours = f"{r['ap'][c]:.1f}" if c in r["ap"] else "–"
                theirs = r["paper"].get("ap", {}).get(c)
                cells.append(ours if theirs is None else f"{ours} ({theirs})")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines += ["", "Per-class cells: ours (paper's, where given)."]
    return "\n".join(lines) + "\n"


def _plots(folder, report):
    from minicnn.plots import plot_ap_bars, plot_k_curve

    curves = {name: r["k_curve"] for name, r in report["runs"].items() if r.get("k_curve")}
    if curves:
        plot_k_curve(os.path.join(folder, "map_against_k.png"), curves, title=report["title"])

    for name, r in report["runs"].items():
        if r["ap"]:
            plot_ap_bars(os.path.join(folder, f"{name}_ap.png"), {c: v / 100 for c, v in r["ap"].items()},
                         title=f"{report['title']}: {name}")


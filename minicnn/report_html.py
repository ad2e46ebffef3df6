"""``OUT/report.html``: a run folder's report in one self-contained page for the browser.

The page is made from what the run left in its folder, so ``minicnn report RUN_DIR`` can
write it again at any time:

- ``run.json`` (``minicnn.runrecord``): the command line, the version, the times, every
  setting, the inputs with their SHA-256, the data counts, the stage times, what was
  skipped and the result;
- the per-class APs, from ``summary.json`` (demo: one column per variant; transfer: its
  variant), ``report.json`` (reproduce: one column per run, in %, beside the paper's) or
  the result in ``run.json`` (localize: detection beside its whole-image baseline), as one
  table whose columns sort on a click (a few lines of inline JavaScript);
- every PNG in the folder and under ``plots/`` and ``heatmaps/`` (training curves,
  precision/recall curves, AP bars, heat maps), embedded as base64; for a transfer run,
  which writes no plots, the training curves are drawn from its history and the
  precision/recall curves from its submission files when its VOC tree is still where
  ``run.json`` says;
- ``report.md``, verbatim, at the end.

Nothing is fetched from elsewhere: no stylesheet, script or font outside the file.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile

from minicnn import distributed
from minicnn.atomic import write_text
from minicnn.errors import InputError
from minicnn.runrecord import RECORD_NAME

FIGURE_FOLDERS = ("plots", "heatmaps")
SMALL_GROUPS = ("Precision/recall curves", "AP bars")  # several to a row
MAX_FIGURES = 40  # per group: a localize run may leave hundreds of heat maps

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#999}
tr.mean td{font-weight:bold;background:#fafafa}
figure{display:inline-block;margin:.4em;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}div.small figure{width:31%}
figcaption{font-size:.85em;color:#555}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.88em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}.muted{color:#666}
"""

# Click a header to sort the table's body by that column (numbers as numbers); again to reverse.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      var key = function (r) { var t = r.cells[col].textContent.trim(), v = parseFloat(t);
                               return isNaN(v) ? t : v; };
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
        return (typeof x === "number" ? -1 : 1) * dir; });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def write_report_html(run_dir) -> str | None:
    """Write ``run_dir/report.html`` (rank 0 alone under MPI); returns its path."""
    if not distributed.is_root():
        return None
    path = os.path.join(run_dir, "report.html")
    write_text(path, render(run_dir))
    return path


def render(run_dir) -> str:
    """The page of the run in ``run_dir``; InputError when the folder holds no run."""
    run_dir = os.fspath(run_dir)
    record = _read_json(os.path.join(run_dir, RECORD_NAME))
    if record is None:
        raise InputError(f"{run_dir}: no {RECORD_NAME}; not the folder of a minicnn run (demo, transfer, "
                         "localize and reproduce write one)")
    summary = _read_json(os.path.join(run_dir, "summary.json")) or {}
    repro = _read_json(os.path.join(run_dir, "report.json")) or {}
    command = record.get("name", "run")
    title = f"minicnn {command}: {os.path.basename(os.path.abspath(run_dir))}"

    parts = [f"<h1>{_e(title)}</h1>", _overview(record)]
    columns, maps, intervals, scale = _ap_columns(command, record, summary, repro)
    if columns:
        parts += ["<h2>Results</h2>", _map_table(maps, intervals, scale, repro), "<h3>AP per class</h3>",
                  '<p class="muted">AP in % of each class on the test set; click a column to sort.</p>',
                  _ap_table(columns, maps, scale)]
    elif record.get("result"):  # no per-class APs (pretrain, make-data, ...): the result as recorded
        parts += ["<h2>Result</h2>", _key_values(_flatten(record["result"]))]
    figures = _figures(run_dir, command, record, summary)
    for group, items, note in figures:
        parts.append(f"<h2>{_e(group)}</h2>")
        if note:
            parts.append(f'<p class="muted">{_e(note)}</p>')
        small = ' class="small"' if group in SMALL_GROUPS else ""
        folders = list(dict.fromkeys(os.path.dirname(name) for name, _ in items))
        for folder in folders:  # one row per folder: plots/transfer, plots/scratch, ...
            if len(folders) > 1:
                parts.append(f"<h3>{_e(folder)}</h3>")
            parts.append(f"<div{small}>" + "".join(_figure(name, data) for name, data in items
                                                    if os.path.dirname(name) == folder) + "</div>")
    parts += ["<h2>Settings</h2>", _key_values(_flatten(record.get("settings", {})))]
    parts += ["<h2>Inputs</h2>", _inputs(record.get("inputs", {}))]
    if record.get("data"):
        parts += ["<h2>Data</h2>", _key_values(_flatten(record["data"]))]
    if record.get("seconds"):
        stages = {k: f"{v:.1f}" for k, v in record["seconds"].items()}
        stages["total"] = f"{sum(record['seconds'].values()):.1f}"
        parts += ["<h2>Stage times (seconds)</h2>", _key_values(stages, numeric=True)]
    if record.get("skipped"):
        parts += ["<h2>Skipped</h2>", _key_values({s.get("item", ""): s.get("reason", "")
                                                    for s in record["skipped"]})]
    md = os.path.join(run_dir, "report.md")
    if os.path.isfile(md):
        with open(md, encoding="utf-8", errors="replace") as f:
            parts += ["<h2>report.md</h2>", f"<pre>{_e(f.read())}</pre>"]
    titles = re.findall(r"<h2>(.*?)</h2>", "".join(parts))
    links = " · ".join(f'<a href="#{_slug(t)}">{t}</a>' for t in titles)
    parts.insert(1, f'<p class="muted">Contents: {links}</p>')
    body = re.sub(r"<h2>(.*?)</h2>", lambda m: f'<h2 id="{_slug(m.group(1))}">{m.group(1)}</h2>',
                  "\n".join(parts))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")


def _read_json(path):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not readable as JSON ({type(e).__name__})") from None


def _slug(title) -> str:
    return re.sub(r"[^a-z0-9]+", "-", html.unescape(title).lower()).strip("-")


def _e(text) -> str:
    return html.escape(str(text))


def _overview(record) -> str:
    rows = {"command": " ".join(record.get("command") or []) or record.get("name", ""),
            "minicnn version": record.get("version", ""),
            "started": record.get("started", ""),
            "finished": record.get("finished") or "not finished",
            "resumed": ", ".join(record.get("resumed") or []) or "never",
            "ranks": record.get("ranks", 1)}
    return _key_values(rows)


def _ap_columns(command, record, summary, repro):
    """({column: {class: AP}}, {column: mAP}, {column: (low, high) of its 95% interval},
    factor to percent) from what the run wrote."""
    if repro.get("runs"):  # reproduce: already in percent
        runs = repro["runs"]
        return ({n: r.get("ap") or {} for n, r in runs.items()}, {n: r.get("map") for n, r in runs.items()},
                {n: r.get("map_interval") for n, r in runs.items()}, 1)
    ap = summary.get("ap")
    if isinstance(ap, dict) and ap and all(isinstance(v, dict) for v in ap.values()):  # demo
        return ap, summary.get("map") or {}, {}, 100
    if isinstance(ap, dict) and ap:  # transfer
        name = summary.get("variant", command)
        return {name: ap}, {name: summary.get("map")}, {}, 100
    result = record.get("result") or {}
    if isinstance(result.get("ap"), dict):  # localize (detection), or a transfer without summary
        name = "detection" if command == "localize" else command
        columns, maps = {name: result["ap"]}, {name: result.get("map")}
        intervals = {name: result.get("interval")}
        whole = result.get("whole_image")  # localize's baseline: the whole image as the box
        if isinstance(whole, dict) and isinstance(whole.get("ap"), dict):
            columns["whole image"], maps["whole image"] = whole["ap"], whole.get("map")
            intervals["whole image"] = whole.get("interval")
        return columns, maps, intervals, 100
    return {}, {}, {}, 100


def _num(value, scale) -> str:
    return "–" if value is None else f"{value * scale:.1f}"


def _map_table(maps, intervals, scale, repro) -> str:
    head = ["run", "mAP (%)"]
    shown = any(v and v[0] is not None for v in intervals.values())
    rows = []
    for name, value in maps.items():
        row = [_e(name), f'<td class="num">{_num(value, scale)}</td>']
        if shown:
            low, high = intervals.get(name) or (None, None)
            text = "–" if low is None else f"{_num(low, scale)} – {_num(high, scale)}"
            row.append(f'<td class="num">{text}</td>')
        r = (repro.get("runs") or {}).get(name)
        if r is not None:
            spread = r.get("map_seed_spread")
            row += [f'<td class="num">{"–" if spread is None else f"{spread:.2f}"}</td>',
                    f'<td class="num">{_e((r.get("paper") or {}).get("map", "–"))}</td>']
        rows.append(f"<tr><td>{row[0]}</td>{''.join(row[1:])}</tr>")
    head += ["95% interval"] if shown else []
    head += ["spread over seeds", "paper"] if repro.get("runs") else []
    return _table(head, rows, sortable=True)


def _ap_table(columns, maps, scale) -> str:
    names = list(columns)
    classes = list(dict.fromkeys(c for col in columns.values() for c in col))
    rows = [f"<tr><td>{_e(c)}</td>" + "".join(f'<td class="num">{_num(columns[n].get(c), scale)}</td>'
                                               for n in names) + "</tr>" for c in classes]
    mean = ('<tr class="mean"><td>mean</td>'
            + "".join(f'<td class="num">{_num(maps.get(n), scale)}</td>' for n in names) + "</tr>")
    return _table(["class", *names], rows, sortable=True, foot=mean)


def _table(head, rows, sortable=False, foot="") -> str:
    cls = ' class="sortable"' if sortable else ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    tfoot = f"<tfoot>{foot}</tfoot>" if foot else ""
    return f"<table{cls}><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody>{tfoot}</table>"


def _key_values(items: dict, numeric=False) -> str:
    td = '<td class="num">' if numeric else "<td>"
    rows = [f"<tr><td><code>{_e(k)}</code></td>{td}{_e(_show(v))}</td></tr>" for k, v in items.items()]
    return _table(["", ""], rows).replace("<thead><tr><th></th><th></th></tr></thead>", "")


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "(none)"
    return "not set" if value is None else str(value)


def _flatten(settings, prefix="") -> dict:
    out = {}
    for key, value in (settings or {}).items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _inputs(inputs) -> str:
    if not inputs:
        return '<p class="muted">(none recorded)</p>'
    rows = [f"<tr><td><code>{_e(p)}</code></td><td><code>{_e(h)}</code></td></tr>" for p, h in inputs.items()]
    return _table(["file", "SHA-256"], rows)


def _figure(name, data: bytes) -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<figure><img src="{src}" alt="{_e(name)}"><figcaption>{_e(name)}</figcaption></figure>'


def _figures(run_dir, command, record, summary):
    """[(group title, [(caption, PNG bytes)], note)] in reading order."""
    found = {name: os.path.join(run_dir, name) for name in sorted(os.listdir(run_dir))
             if name.lower().endswith(".png") and os.path.isfile(os.path.join(run_dir, name))}
    for folder in FIGURE_FOLDERS:
        top = os.path.join(run_dir, folder)
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(".png"):
                    path = os.path.join(root, name)
                    found[os.path.relpath(path, run_dir).replace(os.sep, "/")] = path
    groups = {"Training curves": [], "AP bars": [], "Precision/recall curves": [], "Heat maps": [],
              "Other figures": []}
    for rel, path in found.items():
        base = os.path.basename(rel)
        if rel.startswith("heatmaps/"):
            group = "Heat maps"
        elif base.endswith("_pr.png"):
            group = "Precision/recall curves"
        elif "training" in base or "pretrain" in base:
            group = "Training curves"
        elif "summary" in base or base.endswith("_ap.png") or "against_k" in base:
            group = "AP bars"
        else:
            group = "Other figures"
        groups[group].append((rel, path))
    notes = {}
    if command == "reproduce" and not groups["Training curves"]:
        groups["Training curves"] += _reproduce_training(run_dir)
    if command == "transfer" and not found:
        drawn, note = _transfer_figures(record, summary)
        for group, items in drawn.items():
            groups[group] += items
        if note:
            notes["Precision/recall curves"] = note
            groups["Precision/recall curves"] = groups["Precision/recall curves"] or []
    out = []
    for group, items in groups.items():
        if not items and group not in notes:
            continue
        note = notes.get(group, "")
        if len(items) > MAX_FIGURES:
            note = f"the first {MAX_FIGURES} of {len(items)}; the others are in the run's folder"
            items = items[:MAX_FIGURES]
        out.append((group, [(rel, _png(p)) for rel, p in items], note))
    return out


def _png(path_or_bytes) -> bytes:
    if isinstance(path_or_bytes, bytes):
        return path_or_bytes
    with open(path_or_bytes, "rb") as f:
        return f.read()


def _transfer_figures(record, summary):
    """A transfer run's training curves (from its history) and precision/recall curves
    (its submission files evaluated again, when its VOC tree is still there):
    ({group: [(caption, PNG bytes)]}, a note when the curves could not be drawn)."""
    from minicnn.evaluate.challenge import evaluate_voc, plot_report
    from minicnn.plots import plot_training

    drawn, note = {}, ""
    with tempfile.TemporaryDirectory() as tmp:
        if summary.get("history"):
            path = os.path.join(tmp, "training.png")
            plot_training(path, {summary.get("variant", "transfer"): summary["history"]}, metric="val_map",
                          metric_label="validation mAP", title="adaptation: training loss and validation mAP")
            drawn["Training curves"] = [("training (drawn from summary.json)", _png(path))]
        s = record.get("settings") or {}
        if summary.get("results") and summary.get("ap") and s.get("voc"):
            try:
                from minicnn.data.voc import VOCDataset

                dataset = VOCDataset(s["voc"], int(s.get("year", 2007)), classes=list(summary["ap"]))
                report = evaluate_voc(dataset, s.get("test_set", "test"), s.get("task", "cls"),
                                      summary["results"], metric=s.get("metric"))
                paths = plot_report(report, os.path.join(tmp, "pr"))
                for p in map(str, paths):
                    group = "Precision/recall curves" if p.endswith("_pr.png") else "AP bars"
                    caption = f"{os.path.basename(p)} (drawn from the results)"
                    drawn.setdefault(group, []).append((caption, _png(p)))
            except (InputError, OSError, KeyError, ValueError) as e:
                note = f"precision/recall curves not drawn: {e}"
    return drawn, note


def _reproduce_training(run_dir):
    """The training curves of every run of a reproduce folder (its first seed), drawn from
    the runs' summary.json files: [(caption, PNG bytes)], empty when there are none."""
    from minicnn.plots import plot_training

    histories = {}
    runs = os.path.join(run_dir, "runs")
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        seeds = sorted(os.listdir(os.path.join(runs, name)))
        summary = _read_json(os.path.join(runs, name, seeds[0], "summary.json")) if seeds else None
        if summary and summary.get("history"):
            histories[f"{name} {seeds[0]}"] = summary["history"]
    if not histories:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "training.png")
        plot_training(path, histories, metric="val_map", metric_label="validation mAP",
                      title="adaptation: training loss and validation mAP (first seed of each run)")
        return [("training (drawn from runs/*/seed*/summary.json)", _png(path))]

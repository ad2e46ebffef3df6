"""Break the method on purpose, one bug at a time, and name the test that catches each.

Each mutation replaces one line of the method (a class column, an index, a setting that no
longer reaches its use, ...) in the working tree, runs the method's tests, records the first
test that fails (or NOT CAUGHT), and restores the file, even when interrupted. Run it on a
clean checkout (a `git worktree` is best), with the project installed in editable mode:

    python experiments/mutation_check.py            # every mutation (about 40 minutes on 2 cores)
    python experiments/mutation_check.py 0 5        # mutations 0 and 5 only
"""
import pathlib
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parents[1]
# (what breaks, file, the line as it is, the line broken): one line each, to grep
M = [
 ('FCb class c+1 scores class c', 'minicnn/transfer/pipeline.py', 'return score_items(probs, items, self.settings.train.k)[:, : len(self.classes)], probs', 'return score_items(probs, items, self.settings.train.k)[:, 1 : len(self.classes) + 1], probs'),
 ('std normalisation dropped', 'minicnn/data/preprocess.py', '        x *= xp.asarray((1.0 / np.asarray(self.std, np.float32)).reshape(1, 3, 1, 1))\n', ''),
 ('training on shuffled patch labels', 'minicnn/transfer/train.py', '    labels = np.asarray(labels)\n', '    labels = np.random.default_rng(0).permutation(np.asarray(labels))\n'),
 ('image ids out of order in the submission files', 'minicnn/transfer/pipeline.py', '        keys = self.patches.items["test"].keys\n', '        keys = self.patches.items["test"].keys[::-1]\n'),
 ('class column swapped in the submission files', 'minicnn/transfer/pipeline.py', '            write(paths[name], keys, scores[:, j])', '            write(paths[name], keys, scores[:, (j + 1) % len(self.classes)])'),
 ('k of the settings not reaching the scoring', 'minicnn/transfer/pipeline.py', 'return score_items(probs, items, self.settings.train.k)', 'return score_items(probs, items, 5.0)'),
 ('background fraction not reaching the trainer', 'minicnn/transfer/train.py', 'chosen = resample_background(labels, background, settings.background_fraction, rng)', 'chosen = resample_background(labels, background, 0.1, rng)'),
 ('background drawn once, not each epoch', 'minicnn/transfer/train.py', '    rng = epoch_rng(settings.seed, epoch)\n', '    rng = epoch_rng(settings.seed, 0)\n'),
 ('one sampler scale dropped', 'minicnn/transfer/patchset.py', '    kwargs = {k: v for k, v in (("scales", scales), ("stride_fraction", stride_fraction)) if v is not None}', '    kwargs = {k: v for k, v in (("scales", scales[:-1]), ("stride_fraction", stride_fraction)) if v is not None}'),
 ('patch pixels cut 3 px off their box', 'minicnn/transfer/patchset.py', '        pixels = crop_patches(self._image(i, keep), boxes, self.size', '        pixels = crop_patches(self._image(i, keep), boxes + np.array([3.0, 0, 3.0, 0]), self.size'),
 ('person scored from every patch of its image', 'minicnn/transfer/patchset.py', '        on_box = patches_on_box(patches.patch_boxes[start:stop], pixel_boxes([person.box]))', '        on_box = np.ones(stop - start, dtype=bool)'),
 ("localization boxes from the next class's scores", 'minicnn/transfer/localize.py', '        keep = non_maximum_suppression(boxes, probs[:, c], nms_iou, per_class)\n        out.append((probs[keep, c], boxes[keep]))', '        keep = non_maximum_suppression(boxes, probs[:, (c + 1) % num_classes], nms_iou, per_class)\n        out.append((probs[keep, c], boxes[keep]))'),
 ('channel order ignored', 'minicnn/data/preprocess.py', '        if self.channel_order != "RGB":', '        if False:'),
 ('truth of class c taken from class c+1', 'minicnn/transfer/patchset.py', '            keys, labels = dataset.class_labels(name, split)', '            keys, labels = dataset.class_labels(classes[(c + 1) % len(classes)], split)'),
 ('cache rows off by one', 'minicnn/transfer/pipeline.py', '            return np.asarray(features[np.asarray(patches)], dtype=np.float32)', '            return np.asarray(features[np.minimum(np.asarray(patches) + 1, len(features) - 1)], dtype=np.float32)'),
 ('mean subtraction dropped', 'minicnn/data/preprocess.py', '        x -= xp.asarray(np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1))\n', ''),
 ('difficult objects make positive patches', 'minicnn/transfer/labels.py', '    labels[(count > 1) | (match & gt_difficult[None, :]).any(axis=1)] = DISCARD', '    labels[(count > 1)] = DISCARD'),
 ('discarded patches trained as background', 'minicnn/transfer/labels.py', '    objects = np.flatnonzero((labels >= 0) & (labels != background))', '    objects = np.flatnonzero(labels != background)'),
 ('validation images also trained on (split leaks)', 'minicnn/transfer/pipeline.py', '    train = sorted(order[n_val:].tolist())\n', '    train = sorted(order.tolist())\n'),
 ('test set used for per-epoch validation', 'minicnn/transfer/pipeline.py', 'report = self.evaluate(self.score(net, inputs_of, "val")[0], "val")', 'report = self.evaluate(self.score(net, inputs_of, "test")[0], "test")'),
 ('k applied as p*k instead of p**k', 'minicnn/transfer/scores.py', '    p = np.asarray(patch_probs, dtype=np.float64) ** k\n', '    p = np.asarray(patch_probs, dtype=np.float64) * k\n'),
 ('aggregation by sum, not mean', 'minicnn/transfer/scores.py', '        return sums / counts\n', '        return sums + 0 * counts\n'),
 ('plateau LR schedule never stepped', 'minicnn/training.py', '                schedule.step(record[monitor])\n', '                pass\n'),
 ('trainer told background = C-1 (off by one)', 'minicnn/transfer/pipeline.py', 'self.patches.patch_labels[train_set], self.background, s.train,', 'self.patches.patch_labels[train_set], self.background - 1, s.train,'),
 ('image size stored (height, width): x/y swapped in crop mapping', 'minicnn/transfer/patchset.py', '        sizes.append((width, height))\n', '        sizes.append((height, width))\n'),
 ('x/y swapped in the sampler grid', 'minicnn/transfer/patches.py', '        ys, xs = np.meshgrid(_positions(height, side, stride_fraction),\n                             _positions(width, side, stride_fraction), indexing="ij")', '        ys, xs = np.meshgrid(_positions(width, side, stride_fraction),\n                             _positions(height, side, stride_fraction), indexing="ij")'),
 ('ambiguous persons (several actions) not discarded', 'minicnn/transfer/patchset.py', 'np.array([len(f) != 1 for f in flagged], dtype=bool))', 'np.array([len(f) == 0 for f in flagged], dtype=bool))'),
 ('float16 cache rows written as float32 bytes', 'minicnn/transfer/features.py', '        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()\n', '        data = np.ascontiguousarray(rows, dtype=np.float32).tobytes()\n'),
 ('scratch starts from the source weights', 'minicnn/transfer/pipeline.py', '    if settings.variant == "scratch":\n', '    if False:\n'),
 ('renderer crops boxes by position, not by patch index (pixel variants)', 'minicnn/transfer/patchset.py', '            out[at] = self.image_patches(int(i), self.set.patch_boxes[patches[at]])\n', '            out[at] = self.image_patches(int(i), self.set.patch_boxes[at])\n'),
 ('epoch order not shuffled', 'minicnn/transfer/train.py', '    return rng.permutation(chosen)\n', '    return np.sort(chosen)\n'),
 ('--metric ignored: always voc07', 'minicnn/transfer/pipeline.py', 'return evaluate_items(scores, truth, self.classes, s.train.metric, task=s.task,', 'return evaluate_items(scores, truth, self.classes, "voc07", task=s.task,'),
 ('weight decay not applied', 'minicnn/training.py', '    opt = SGD(net, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)\n', '    opt = SGD(net, lr=settings.lr, momentum=settings.momentum, weight_decay=0.0)\n'),
 ('difficult-only items counted as negatives', 'minicnn/evaluate/items.py', '        rec, prec = precision_recall(scores[:, c], truth[:, c])\n', '        rec, prec = precision_recall(scores[:, c], np.where(truth[:, c] == 0, -1, truth[:, c]))\n'),
 ("saved network's scales not the run's (localize samples others)", 'minicnn/transfer/pipeline.py', 'self.net.meta.update(target_classes=self.classes, k=s.train.k, scales=list(s.scales),', 'self.net.meta.update(target_classes=self.classes, k=s.train.k, scales=list(SCALES),'),
 ('last patch of each image dropped from scoring', 'minicnn/transfer/patchset.py', '    ranges = [np.arange(offsets[position[i]], offsets[position[i] + 1]) for i in image_ids]\n', '    ranges = [np.arange(offsets[position[i]], offsets[position[i] + 1] - 1) for i in image_ids]\n'),
 ('reweight balance: background not down-weighted', 'minicnn/transfer/train.py', '    weights = (background_weights(labels, background, settings.background_fraction)\n', '    weights = (background_weights(labels, background, 1.0)\n'),
 ('dropout active when scoring', 'minicnn/transfer/train.py', '        scores = net.forward(backend.asarray(x), train=False, keep_for_backward=False)\n', '        scores = net.forward(backend.asarray(x), train=True, keep_for_backward=False)\n'),
 ('resumed run forgets the schedule state', 'minicnn/training.py', '        schedule.best, schedule.bad_epochs = state["schedule"]\n', ''),
 ('cache key ignores preprocessing (stale cache reused)', 'minicnn/transfer/pipeline.py', '             "input_size": self.input_size, "task": s.task, **self.preprocessing.to_meta(), "paths": p.paths},', '             "input_size": self.input_size, "task": s.task, "paths": p.paths},'),
 ('discarded patches trained as background (label -1 -> background)', 'minicnn/transfer/pipeline.py', 'self.patches.patch_labels[train_set], self.background, s.train,', 'np.where(self.patches.patch_labels[train_set] < 0, self.background, self.patches.patch_labels[train_set]), self.background, s.train,'),
]
TESTS = ["tests/test_method_results.py", "tests/test_method_pieces.py", "tests/test_method_learning.py",
         "tests/test_transfer_end_to_end.py", "tests/test_transfer_labels.py",
         "tests/test_transfer_patches.py", "tests/test_transfer_features.py", "tests/test_transfer_localize.py"]
only = sys.argv[1:]
for n, (name, path, old, new) in enumerate(M):
    if only and str(n) not in only:
        continue
    f = root / path
    src = f.read_text()
    if old not in src:
        print(f"{n:2d} {name}: PATTERN NOT FOUND (the code moved: update the mutation)", flush=True)
        continue
    f.write_text(src.replace(old, new, 1))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                           cwd=root, capture_output=True, text=True, timeout=900)
        failed = [line for line in r.stdout.splitlines() if line.startswith("FAILED")]
        verdict = "CAUGHT by " + failed[0][7:].split(" - ")[0] if failed else "NOT CAUGHT"
        print(f"{n:2d} {name}: {verdict}", flush=True)
    finally:
        f.write_text(src)

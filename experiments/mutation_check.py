"""Break the method on purpose, one bug at a time, and name the test that catches each.

Each mutation replaces one line of the method (a class column, an index, a setting that no
longer reaches its use, ...) in the working tree, runs the method's tests, records the first
test that fails (or NOT CAUGHT), and restores the file, even when interrupted. Run it on a
clean checkout (a `git worktree` is best), with the project installed in editable mode:

    python experiments/mutation_check.py            # every mutation (about 10 minutes on 2 cores)
    python experiments/mutation_check.py 0 5        # mutations 0 and 5 only
"""
import pathlib
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parents[1]
# (what breaks, file, the line as it is, the line broken): one line each, to grep
M = [
 ("FCb class c+1 scores class c", "minicnn/transfer/pipeline.py", "return score_items(probs, items, self.settings.train.k)[:, : len(self.classes)], probs", "return score_items(probs, items, self.settings.train.k)[:, 1 : len(self.classes) + 1], probs"),
 ("std normalisation dropped", "minicnn/data/preprocess.py", "        x *= (1.0 / np.asarray(self.std, np.float32)).reshape(1, 3, 1, 1)\n", ""),
 ("training on shuffled patch labels", "minicnn/transfer/train.py", "    labels = np.asarray(labels)\n", "    labels = np.random.default_rng(0).permutation(np.asarray(labels))\n"),
 ("image ids out of order in the submission files", "minicnn/transfer/pipeline.py", "        keys = self.patches.items[\"test\"].keys\n", "        keys = self.patches.items[\"test\"].keys[::-1]\n"),
 ("class column swapped in the submission files", "minicnn/transfer/pipeline.py", "            write(paths[name], keys, scores[:, j])", "            write(paths[name], keys, scores[:, (j + 1) % len(self.classes)])"),
 ("k of the settings not reaching the scoring", "minicnn/transfer/pipeline.py", "return score_items(probs, items, self.settings.train.k)", "return score_items(probs, items, 5.0)"),
 ("background fraction not reaching the trainer", "minicnn/transfer/train.py", "chosen = resample_background(labels, background, settings.background_fraction, rng)", "chosen = resample_background(labels, background, 0.1, rng)"),
 ("background drawn once, not each epoch", "minicnn/transfer/train.py", "    rng = epoch_rng(settings.seed, epoch)\n", "    rng = epoch_rng(settings.seed, 0)\n"),
 ("one sampler scale dropped", "minicnn/transfer/patchset.py", "    kwargs = {k: v for k, v in ((\"scales\", scales), (\"stride_fraction\", stride_fraction)) if v is not None}", "    kwargs = {k: v for k, v in ((\"scales\", scales[:-1]), (\"stride_fraction\", stride_fraction)) if v is not None}"),
 ("patch pixels cut 3 px off their box", "minicnn/transfer/patchset.py", "        pixels = crop_patches(self._image(i), boxes, self.size", "        pixels = crop_patches(self._image(i), boxes + np.array([3.0, 0, 3.0, 0]), self.size"),
 ("person scored from every patch of its image", "minicnn/transfer/patchset.py", "        on_box = patches_on_box(patches.patch_boxes[start:stop], pixel_boxes([person.box]))", "        on_box = np.ones(stop - start, dtype=bool)"),
 ("localization boxes from the next class's scores", "minicnn/transfer/localize.py", "        keep = non_maximum_suppression(boxes, probs[:, c], nms_iou, per_class)\n        out.append((probs[keep, c], boxes[keep]))", "        keep = non_maximum_suppression(boxes, probs[:, (c + 1) % num_classes], nms_iou, per_class)\n        out.append((probs[keep, c], boxes[keep]))"),
 ("channel order ignored", "minicnn/data/preprocess.py", "        if self.channel_order != \"RGB\":", "        if False:"),
 ("truth of class c taken from class c+1", "minicnn/transfer/patchset.py", "            keys, labels = dataset.class_labels(name, split)", "            keys, labels = dataset.class_labels(classes[(c + 1) % len(classes)], split)"),
 ("cache rows off by one", "minicnn/transfer/pipeline.py", "            return np.asarray(features[np.asarray(patches)], dtype=np.float32)", "            return np.asarray(features[np.minimum(np.asarray(patches) + 1, len(features) - 1)], dtype=np.float32)"),
 ("mean subtraction dropped", "minicnn/data/preprocess.py", "        x -= np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)\n", ""),
 ("difficult objects make positive patches", "minicnn/transfer/labels.py", "    labels[(count > 1) | (match & gt_difficult[None, :]).any(axis=1)] = DISCARD", "    labels[(count > 1)] = DISCARD"),
 ("discarded patches trained as background", "minicnn/transfer/labels.py", "    objects = np.flatnonzero((labels >= 0) & (labels != background))", "    objects = np.flatnonzero(labels != background)"),
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

"""Every reader of outside files, fuzzed (issue 26): the property each must hold on any
input is that it returns a correct result or raises ``InputError`` naming the file (in
printable text: no raw bytes), never another exception, never a hang, and never a write.

A reader is a ``Reader``: ``setup(folder)`` writes a valid file and what the reader needs
beside it (image folders, set files) and returns the path of the file to fuzz; ``read(path)``
reads it as minicnn does; ``check(result)``, where given, is what a correct result of the
*valid* file satisfies (run on the unmutated file, it must pass). Inputs are the valid file
mutated (cut, bytes flipped, inserted, deleted, lines repeated or swapped, numbers replaced
by odd ones), random bytes and random text. Used by tests/test_fuzz_readers.py (a small
budget in the suite) and experiments/fuzz.py (a large one).
"""

from __future__ import annotations

import io
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from minicnn.errors import InputError

HANG_SECONDS = 20  # one reading of a few-kilobyte file taking longer than this is a hang


@dataclass
class Reader:
    name: str
    setup: object  # folder -> path of the file to fuzz
    read: object  # path -> result
    check: object = None  # result of the valid file -> None (asserts)
    writes: bool = False  # a successful read may write (a resumed run record), a refusal never
    folder_named: bool = False  # a refusal may name the file's folder instead (a run's output folder)


# --- the inputs --------------------------------------------------------------------------------

ODD_NUMBERS = [b"nan", b"-inf", b"inf", b"1e309", b"-1", b"0", b"-0", b"99999999999999999999", b"1.5",
               b"0x1F", b"", b" ", b"1e-320", b"+3", b"\xc3\xa9", b"\x00", b"-2147483649", b"4294967296"]


@st.composite
def mutated(draw, valid: bytes):
    """``valid`` with one to four edits."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete", "line", "number", "swap"]))
        n = len(data)
        at = draw(st.integers(0, n))
        if kind == "cut":
            del data[at:]
        elif kind == "flip" and n:
            data[min(at, n - 1)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16) | st.sampled_from(ODD_NUMBERS))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind in ("line", "swap"):
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "line":
                lines.insert(i, lines[j])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif kind == "number":
            import re

            spans = [m.span() for m in re.finditer(rb"-?\d+(\.\d+)?", bytes(data))]
            if spans:
                a, b = spans[draw(st.integers(0, len(spans) - 1))]
                data[a:b] = draw(st.sampled_from(ODD_NUMBERS))
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@st.composite
def json_mutated(draw, document):
    """A JSON ``document`` with one to three values (or keys) replaced by any JSON value,
    so that the mutations reach the reader's checks of types and values, past the parser."""
    import copy

    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        node, path = document, []
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            document = draw(JSON_VALUES)
            continue
        parent, key = path[-1]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[key]  # a key missing
        else:
            parent[key] = draw(JSON_VALUES)
    return json.dumps(document, allow_nan=True).encode()


def inputs(valid: bytes):
    """The strategy of one reader's inputs: mostly the valid file mutated (bytes, and for a
    JSON file its values), some random bytes and random text."""
    bytewise = [mutated(valid), mutated(valid), mutated(valid), st.binary(max_size=512),
                st.text(max_size=256).map(lambda t: t.encode("utf-8", "surrogatepass"))]
    try:
        document = json.loads(valid)
    except ValueError:
        return st.one_of(*bytewise)
    return st.one_of(*bytewise, json_mutated(document), json_mutated(document), json_mutated(document))


# --- the property ------------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer in {HANG_SECONDS} s")


def files(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            st_ = os.stat(path)
            out[path] = (st_.st_size, st_.st_mtime_ns)
    return out


def outcome(reader: Reader, path: Path, data: bytes) -> tuple[str, str]:
    """("ok" | "refused", message) when the property holds, else ("failure", what broke)."""
    path.write_bytes(data)
    folder = path.parent
    before = files(folder)
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_SECONDS)
    try:
        reader.read(path)
        result = ("ok", "")
    except InputError as e:
        message = str(e)
        named = path.name in message or (reader.folder_named and str(path.parent) in message)
        if not named:
            result = ("failure", f"InputError not naming {path.name}: {message[:300]}")
        elif not message.isprintable():
            result = ("failure", f"InputError with unprintable text: {message[:300]!r}")
        else:
            result = ("refused", message)
    except Hang as e:
        result = ("failure", f"hang: {e}")
    except RecursionError:
        result = ("failure", "RecursionError")
    except Exception as e:  # noqa: BLE001 -- the property: no other exception
        result = ("failure", f"{type(e).__name__}: {str(e)[:300]}")
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    after = files(folder)
    if after != before and not (reader.writes and result[0] == "ok"):
        changed = sorted(set(after.items()) ^ set(before.items()))
        result = ("failure", f"wrote {changed[0][0]} ({result[0]}: {result[1][:200]})")
    return result


# --- the readers -------------------------------------------------------------------------------

def _png(width=16, height=12, seed=0):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(width=24, height=16, seed=0):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _voc_tree(folder):
    from voc_tree import annotation_xml, obj, write_voc

    objects = {"000001": [obj("car", (3, 4, 40, 30)), obj("person", (10, 10, 60, 70), difficult=True,
                                                          actions={"jumping"}, part=True)],
               "000002": [obj("dog", (1, 1, 100, 80), truncated=True)]}
    voc = write_voc(folder, objects, split="test")
    for image_id in objects:
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(_jpeg(100, 80))
    (voc / "ImageSets" / "Main" / "car_test.txt").write_text("000001  1\n000002 -1\n")
    return voc, annotation_xml


def voc_xml():
    def setup(folder):
        voc, _ = _voc_tree(folder)
        return voc / "Annotations" / "000001.xml"

    def read(path):
        from minicnn.data.voc import read_annotation

        read_annotation(path)
        return read_annotation(path, clip_boxes=True)

    def check(ann):
        assert ann.width == 100 and ann.height == 80
        assert [o.name for o in ann.objects] == ["car", "person"]
        assert ann.objects[0].box == (3, 4, 40, 30) and ann.objects[1].difficult
        assert ann.objects[1].actions == {"jumping"}

    return Reader("VOC annotation XML", setup, read, check)


def image_set():
    def setup(folder):
        voc, _ = _voc_tree(folder)
        return voc / "ImageSets" / "Main" / "test.txt"

    def read(path):
        from minicnn.data.voc import VOCDataset

        dataset = VOCDataset(path.parents[3], 2007)
        ids = dataset.image_ids("test")
        return ids, dataset.listed_classes("test")

    def check(result):
        assert result[0] == ["000001", "000002"]

    return Reader("image-set list", setup, read, check)


def class_set():
    def setup(folder):
        voc, _ = _voc_tree(folder)
        return voc / "ImageSets" / "Main" / "car_test.txt"

    def read(path):
        from minicnn.data.voc import VOCDataset

        return VOCDataset(path.parents[3], 2007).class_labels("car", "test")

    def check(result):
        keys, labels = result
        assert keys == ["000001", "000002"] and labels.tolist() == [1, -1]

    return Reader("class image-set list", setup, read, check)


def action_set():
    def setup(folder):
        voc, _ = _voc_tree(folder)
        path = voc / "ImageSets" / "Action" / "jumping_test.txt"
        path.write_text("000001  2  1\n")  # the person is the image's second object
        (voc / "ImageSets" / "Action" / "test.txt").write_text("000001 2\n")
        return path

    def read(path):
        from minicnn.data.voc import VOCDataset

        return VOCDataset(path.parents[3], 2007).action_labels("jumping", "test")

    return Reader("action image-set list", setup, read)


def results(task):
    lines = {"cls": "000001 0.5\n000002 -0.25\n", "det": "000001 0.9 1 2 30 40\n000002 0.1 5 5 9 9.5\n",
             "action": "000001 1 0.5\n000002 2 -1e-3\n"}[task]

    def setup(folder):
        path = folder / f"comp1_{task}_test_car.txt"
        path.write_text(lines)
        return path

    def read(path):
        from minicnn.evaluate import submission

        return {"cls": submission.read_cls_results, "det": submission.read_det_results,
                "action": submission.read_action_results}[task](path)

    def check(result):
        scores = result[1]
        assert len(result[0]) == 2 and np.isfinite(scores).all()

    return Reader(f"{task} results file", setup, read, check)


def image(kind):
    def setup(folder):
        path = folder / f"000001.{kind}"
        path.write_bytes(_jpeg() if kind == "jpg" else _png())
        return path

    def read(path):
        from minicnn.data.transforms import decoded_size, image_size, load_image, scan_images

        bad = scan_images([path], workers=1, decode=True)
        size = decoded_size(path, draft_side=4)
        if bad:  # the scan's verdict agrees with the readers: the file cannot be decoded
            assert bad[0][0] == str(path) and path.name in bad[0][1]
            load_image(path)  # must raise the InputError naming it
            raise AssertionError("scan_images found the file unreadable, load_image read it")
        picture = load_image(path)
        assert picture.mode == "RGB" and picture.size == image_size(path)
        assert size is not None
        return picture

    def check(picture):
        assert picture.size == ((24, 16) if kind == "jpg" else (16, 12))

    return Reader(f"{'JPEG' if kind == 'jpg' else 'PNG'} image", setup, read, check)


def _small_net():
    import minicnn as mc
    from minicnn import layers as L

    mc.seed(0)
    net = mc.Sequential([L.Conv2D(3, 2, 3), L.ReLU(), L.Flatten(), L.Linear(2 * 4 * 4, 3)],
                        names=["conv1", "relu1", "flat", "fc"], input_shape=(3, 6, 6))
    net.meta.update(classes=["a", "b", "c"])
    return net


def npz_network():
    def setup(folder):
        path = folder / "net.npz"
        _small_net().save(path)
        return path

    def read(path):
        import minicnn as mc

        return mc.Sequential.load(path)

    def check(net):
        assert net.names == ["conv1", "relu1", "flat", "fc"] and net.meta["classes"] == ["a", "b", "c"]

    return Reader(".npz network (bytes)", setup, read, check)


def npz_entry(entry):
    """The fuzzed file is one entry of a checkpoint .npz (the architecture JSON or the
    training state), written back into a valid zip, so that the mutations reach the parser
    behind it."""
    from minicnn.checkpoint import STATE_KEY, save_checkpoint
    from minicnn.net import ARCH_KEY

    key = ARCH_KEY if entry == "architecture" else STATE_KEY

    def setup(folder):
        net = _small_net()
        save_checkpoint(folder / "source.npz", net, state={"epoch": 3, "history": [{"loss": 1.5}]})
        with np.load(folder / "source.npz", allow_pickle=False) as data:
            text = str(data[key])
        path = folder / f"{entry}.json"
        path.write_text(text)
        return path

    def read(path):
        from minicnn.checkpoint import load_checkpoint

        with np.load(path.parent / "source.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        try:
            arrays[key] = np.array(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            arrays[key] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
        target = path.with_suffix(".npz")
        np.savez(target, **arrays)
        try:
            return load_checkpoint(target)
        except InputError as e:  # named by the .npz it is an entry of
            message = str(e).replace(target.name, path.name) if target.name in str(e) else str(e)
            raise InputError(message) from None
        finally:
            target.unlink()

    def check(result):
        net, state = result
        assert net.names == ["conv1", "relu1", "flat", "fc"] and state["epoch"] == 3

    return Reader(f"checkpoint .npz {entry} entry", setup, read, check)


def run_record():
    def setup(folder):
        from minicnn.runrecord import RunRecord

        out = folder / "run"
        RunRecord(out, "transfer", {"epochs": 2, "lr": 0.01, "scales": [1.0, 2.0]}, argv=["minicnn"])
        return out / "run.json"

    def read(path):
        from minicnn.runrecord import RunRecord

        return RunRecord(path.parent, "transfer", {"epochs": 2, "lr": 0.01, "scales": [1.0, 2.0]},
                         resume=True, argv=["minicnn"])

    def check(record):
        assert record.resumed and record["name"] == "transfer"

    return Reader("run.json", setup, read, check, writes=True, folder_named=True)


def reproduce_config():
    def setup(folder):
        source = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "claims_generated.toml"
        path = folder / "config.toml"
        path.write_bytes(source.read_bytes())
        return path

    def read(path):
        from minicnn.reproduce import read_config

        read_config(path)
        return read_config(path, quick=True)

    def check(config):
        assert [r["name"] for r in config["runs"]][:2] == ["transfer", "scratch"]

    return Reader("reproduce TOML config", setup, read, check)


def coco_json():
    def setup(folder):
        images = folder / "images"
        images.mkdir()
        (images / "a.jpg").write_bytes(_jpeg(40, 30))
        (images / "b.png").write_bytes(_png(20, 20))
        data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                           {"id": 2, "file_name": "b.png", "width": 20, "height": 20}],
                "annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [1.5, 2, 20, 10],
                                 "iscrowd": 0, "area": 200},
                                {"id": 11, "image_id": 2, "category_id": 18, "bbox": [0, 0, 20, 20],
                                 "iscrowd": 1, "area": 400}],
                "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]}
        path = folder / "instances.json"
        path.write_text(json.dumps(data, indent=1))
        return path

    def read(path):
        from minicnn.data.convert import read_coco

        return read_coco(path.parent / "images", path)

    def check(conv):
        assert len(conv.images) == 2 and conv.objects_per_class()["car"] == 1

    return Reader("COCO JSON", setup, read, check)


def yolo(which):
    def setup(folder):
        images, labels = folder / "images", folder / "labels"
        images.mkdir()
        labels.mkdir()
        (images / "a.jpg").write_bytes(_jpeg(40, 30))
        (images / "b.jpg").write_bytes(_jpeg(32, 32, seed=1))
        (labels / "a.txt").write_text("0 0.5 0.5 0.25 0.4\n1 0.2 0.3 0.1 0.1\n")
        (labels / "b.txt").write_text("\n")
        (folder / "obj.names").write_text("car\ndog\n")
        return labels / "a.txt" if which == "labels" else folder / "obj.names"

    def read(path):
        from minicnn.data.convert import read_yolo

        folder = path.parent.parent if which == "labels" else path.parent
        return read_yolo(folder / "images", folder / "labels", folder / "obj.names")

    def check(conv):
        counts = {name: n for name, n in conv.objects_per_class().items() if n}
        assert counts == {"car": 1, "dog": 1}

    return Reader(f"YOLO {which} file", setup, read, check)


def image_list():
    def setup(folder):
        root = folder / "data"
        for cls in ("cat", "dog"):
            (root / cls).mkdir(parents=True)
            for n in range(2):
                (root / cls / f"{n}.png").write_bytes(_png(8, 8, seed=n))
        path = folder / "list.txt"
        path.write_text("cat/0.png\ndog/1.png\ncat/1.png\n")
        return path

    def read(path):
        from minicnn.data.folders import read_folder

        return read_folder(path.parent / "data", list_file=path)

    def check(folder):
        assert len(folder.paths) == 3

    return Reader("image-folder list file", setup, read, check)


def class_list():
    def setup(folder):
        path = folder / "source.classes.txt"
        path.write_text("n02121808\nn02084071\n")
        return path

    def read(path):
        from minicnn.data.folders import read_class_list

        return read_class_list(path)

    def check(classes):
        assert classes == ["n02121808", "n02084071"]

    return Reader("class-list file", setup, read, check)


def readers():
    return [voc_xml(), image_set(), class_set(), action_set(), results("cls"), results("det"),
            results("action"), image("jpg"), image("png"), npz_network(), npz_entry("architecture"),
            npz_entry("state"), run_record(), reproduce_config(), coco_json(), yolo("labels"),
            yolo("names"), image_list(), class_list()]

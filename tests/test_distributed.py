"""Data-parallel runs (``mpiexec -n 2``) give what one process gives: the weights of source
training to float32 rounding with dropout on, the feature cache's bytes and the transfer's
mAP; a run resumes with another number of ranks; a failing rank ends the job with its
message; ranks started with different settings are refused. The pieces that make the
result independent of the number of ranks (each rank's crops, the dropout masks) are also
checked in this process, for several rank counts."""

import json
import os
import shutil
import subprocess
import sys
import time
import types
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minicnn as mc
from minicnn import distributed
from minicnn.data.loader import ImageLoader
from minicnn.data.synthetic import DataConfig, generate
from minicnn.data.transforms import ImageTransform, decoded_size, load_image
from minicnn.demo import DemoSettings
from minicnn.ops.dropout import dropout_mask, global_batch
from minicnn.pretrain import RankLoader

# --- in this process: rank r of N simulated -------------------------------------------------


@pytest.fixture
def as_rank(monkeypatch):
    """``as_rank(r, n)``: shard() and the loaders act as rank r of n (no communication)."""
    def set_rank(rank, size):
        monkeypatch.setattr(distributed, "_world", distributed.World(rank, size))
    yield set_rank
    monkeypatch.setattr(distributed, "_world", None)


@pytest.fixture
def odd_images(tmp_path):
    """JPEGs large enough to be decoded at reduced scale, one turned by its EXIF tag, PNGs,
    of many sizes: the number of draws of a random crop differs from image to image."""
    rng = np.random.default_rng(1)
    paths = []
    for n, (w, h) in enumerate([(40, 30), (200, 90), (400, 300), (37, 37), (90, 260), (64, 48), (150, 151),
                                (300, 80), (45, 90), (120, 80), (333, 222)]):
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        path = tmp_path / f"{n}.{'png' if n % 4 == 3 else 'jpg'}"
        if n == 9:
            exif = Image.Exif()
            exif[0x0112] = 6  # turned by 90 degrees: width and height swap
            image.save(path, exif=exif)
        else:
            image.save(path)
        paths.append(str(path))
    return paths


def test_decoded_size_is_the_size_of_the_decoded_image(odd_images):
    for path in odd_images:
        for side in (None, 37, 64):
            assert decoded_size(path, side) == load_image(path, draft_side=side).size, (path, side)


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_the_ranks_slices_are_the_single_process_batches(odd_images, as_rank, ranks):
    transform = ImageTransform(32, resize=37, random_crop=True, flip=True)
    settings = dict(batch_size=5, shuffle=True, seed=3, workers=0)
    labels = np.arange(len(odd_images))
    whole = list(ImageLoader(odd_images, labels, transform, **settings).epoch(2))
    parts = []
    for rank in range(ranks):
        as_rank(rank, ranks)
        parts.append(list(RankLoader(odd_images, labels, transform, **settings).epoch(2)))
    assert all(len(p) == len(whole) for p in parts)  # every rank takes every step, empty slices too
    for b, batch in enumerate(whole):
        assert np.array_equal(np.concatenate([p[b].labels for p in parts]), batch.labels)
        assert np.array_equal(np.concatenate([p[b].images for p in parts]), batch.images), (ranks, b)


def test_dropout_masks_are_the_global_batch_rows():
    dtype = np.dtype(np.float32)
    mc.backend.seed_stream(0, 1, 3, 7)
    whole = dropout_mask((10, 6), 0.5, dtype)
    for first, n in [(0, 5), (5, 5), (3, 4), (10, 0)]:
        mc.backend.seed_stream(0, 1, 3, 7)
        with global_batch(first, 10):
            assert np.array_equal(dropout_mask((n, 6), 0.5, dtype), whole[first:first + n])


def test_one_process_is_rank_0_of_1_without_mpi(monkeypatch):
    for name in (*distributed._LAUNCH_VARIABLES, "MINICNN_MPI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_world", None)
    assert not distributed.launched_by_mpi()
    assert distributed.world() == distributed.World() and distributed.is_root()
    assert distributed.shard(7) == slice(0, 7) and distributed.global_rows(5) == (0, 5)


def test_batch_parts_cut_each_slice_at_the_parts_boundaries():
    from minicnn.training import batch_pieces

    assert batch_pieces(0, 64, 64, None) == [(0, 64)]
    assert batch_pieces(0, 64, 64, 4) == [(0, 16), (16, 32), (32, 48), (48, 64)]  # one process
    assert batch_pieces(32, 32, 64, 4) == [(32, 48), (48, 64)]  # rank 1 of 2: whole parts
    assert batch_pieces(0, 33, 65, 2) == [(0, 32), (32, 33)]  # a slice that is not whole parts
    assert batch_pieces(5, 0, 9, 2) == []


def test_batch_parts_must_be_a_multiple_of_the_ranks(as_rank):
    from minicnn.training import SGDSettings

    as_rank(0, 2)
    assert SGDSettings(batch_parts=4).batch_parts == 4
    with pytest.raises(mc.InputError, match=r"--batch-parts 3 must be a multiple of the 2 ranks"):
        SGDSettings(batch_parts=3)
    with pytest.raises(mc.InputError, match=r"--batch-parts must be an integer in \[1, 8\], got 0"):
        SGDSettings(batch_size=8, batch_parts=0)


class _DeviceArray(np.ndarray):
    """Stands for a CuPy array (its type's module is "cupy"), its memory at ``.data.ptr``."""

    __module__ = "cupy"

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _fake_cupy(calls):
    """A ``cupy`` with what the NCCL path calls: ``cuda.nccl`` records its calls, and its
    all-reduce adds what a second rank with the same gradients would (it doubles them)."""
    import ctypes

    def all_reduce(send, recv, count, datatype, op, stream):
        calls.append(("allReduce", send == recv, count, datatype, op, stream))
        kind = {1: ctypes.c_float, 2: ctypes.c_double}[datatype]
        np.ctypeslib.as_array((kind * count).from_address(recv))[:] *= 2

    def communicator(size, uid, rank):
        calls.append(("NcclCommunicator", size, uid, rank))
        return types.SimpleNamespace(allReduce=all_reduce)

    nccl = types.SimpleNamespace(get_unique_id=lambda: (7, 7, 7), NcclCommunicator=communicator,
                                 NCCL_FLOAT32=1, NCCL_FLOAT64=2, NCCL_SUM=0)
    cuda = types.SimpleNamespace(nccl=nccl, get_current_stream=lambda: types.SimpleNamespace(ptr=1234))
    return types.SimpleNamespace(cuda=cuda,
                                 concatenate=lambda parts: np.concatenate(parts).view(_DeviceArray))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # float64: the sums of --batch-parts
def test_gradients_on_the_gpu_are_summed_through_nccl(monkeypatch, dtype):
    """The cuda backend's path: the gradients of every trainable layer in one NCCL
    all-reduce, in place, on CuPy's current stream, with a communicator made once from rank
    0's unique id broadcast over MPI (a stand-in for CuPy and MPI: no GPU here)."""
    calls, broadcasts = [], []
    cupy = _fake_cupy(calls)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cupy.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", cupy.cuda.nccl)
    comm = types.SimpleNamespace(bcast=lambda obj, root: broadcasts.append((obj, root)) or obj)
    monkeypatch.setattr(distributed, "_world", distributed.World(0, 2, comm))
    monkeypatch.setattr(distributed, "_nccl", None)
    net = mc.Sequential([mc.layers.Linear(3, 4), mc.layers.ReLU(), mc.layers.Linear(4, 2)])
    net.layers[0].frozen = True  # not trained: not reduced
    rng = np.random.default_rng(0)
    for _ in range(2):
        grads = {(i, k): rng.standard_normal(p.shape).astype(dtype)
                 for i, layer in enumerate(net.layers) for k, p in layer.params.items()}
        for (i, k), g in grads.items():
            net.layers[i].grads[k] = g.view(_DeviceArray)
        distributed.allreduce_gradients(net)
        for (i, k), g in grads.items():
            assert np.array_equal(np.asarray(net.layers[i].grads[k]), g * (1 if i == 0 else 2)), (i, k)
    kind = 1 if dtype == np.float32 else 2
    assert calls == [("NcclCommunicator", 2, (7, 7, 7), 0),
                     ("allReduce", True, 4 * 2 + 2, kind, 0, 1234), ("allReduce", True, 10, kind, 0, 1234)]
    assert broadcasts == [((7, 7, 7), 0)]  # the unique id, once, from rank 0


# --- under mpiexec ----------------------------------------------------------------------------

MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or find_spec("mpi4py") is None,
    reason="needs mpiexec and mpi4py (pip install -e '.[dev]' brings mpi4py and mpich)")
TINY = ["--model", "small", "--channels", "8,16,16,16,16", "--hidden", "24", "--batch-size", "32",
        "--workers", "1", "--backend", "numpy"]
# the default scales: 275 patches per image, so that the cache's groups (256 patches) and the
# scoring's batches are spread over both ranks
# --batch-parts 2: the adaptation layers of 1 and 2 ranks are then the same bytes
TRANSFER = ["--year", "2007", "--epochs", "3", "--hidden", "8", "--stride", "0.5", "--backend", "numpy",
            "--batch-size", "16", "--batch-parts", "2"]
# two cores for two ranks: one thread each
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _launcher():
    """mpiexec -n 2, with MPICH's fork launcher where it is MPICH's (no ssh in containers)."""
    if MPIEXEC is None:
        return []
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    return [MPIEXEC, *(["-launcher", "fork"] if "HYDRA" in version else [])]


LAUNCHER = _launcher()
MINICNN = [sys.executable, "-m", "minicnn"]


def run(*args, ranks=1, mpmd=None, expect=0, timeout=240, threads=1):
    """``minicnn ARGS`` in one process (ranks=1) or under ``mpiexec -n ranks``, each with
    ``threads`` kernel threads; ``mpmd``: other arguments for rank 1 (``mpiexec -n 1 A :
    -n 1 B``). Returns stderr."""
    args = [str(a) for a in args]
    if mpmd is not None:
        command = [*LAUNCHER, "-n", "1", *MINICNN, *args, ":", "-n", "1", *MINICNN, *map(str, mpmd)]
    elif ranks > 1:
        command = [*LAUNCHER, "-n", str(ranks), *MINICNN, *args]
    else:
        command = [*MINICNN, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**ENV, "NUMBA_NUM_THREADS": str(threads)})
    assert done.returncode == expect, done.stderr
    return done.stderr


def relative_difference(a, b, layers=None):
    """||a - b|| / ||a|| over the weights of two .npz networks (``layers``: only those).

    Over the whole network, not element by element: a max pool breaks a tie between equal
    activations (flat regions of the generated images) by 1-ulp differences, which half a
    batch computes differently from the whole one, and routes a gradient to the
    neighbouring position; such float32 effects move single elements of small tensors
    (biases) by 1e-4 of their largest while the weights agree to 1e-6. A wrong all-reduce,
    a wrong scale, per-rank dropout masks or per-rank crops give 4e-3 to 1.5e-2 here."""
    with np.load(a) as x, np.load(b) as y:
        keys = [k for k in x.files
                if x[k].dtype.kind == "f" and (layers is None or k.split(".")[0] in layers)]
        assert keys and all(x[k].shape == y[k].shape for k in keys)
        difference = sum(float(np.square(x[k].astype(np.float64) - y[k]).sum()) for k in keys)
        return np.sqrt(difference / sum(float(np.square(x[k].astype(np.float64)).sum()) for k in keys))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The generated data and one epoch of source training with 1 and with 2 ranks."""
    root = tmp_path_factory.mktemp("mpi")
    generate(root / "data", DataConfig(source_per_class=10, trainval=8, test=5), workers=1)
    for ranks in (1, 2):
        run("pretrain", "--data", root / "data" / "source", "--epochs", 1, *TINY,
            "--out", root / f"pre{ranks}", ranks=ranks)
    return root


@needs_mpi
def test_two_ranks_train_the_weights_of_one(runs):
    one, two = runs / "pre1", runs / "pre2"
    assert relative_difference(one / "source.npz", two / "source.npz") < 1e-4  # dropout on (drop6, drop7)
    record = json.loads((two / "run.json").read_text())
    assert record["ranks"] == 2 and record["finished"] is not None
    assert json.loads((one / "run.json").read_text())["ranks"] == 1
    h1, h2 = (json.loads((d / "run.json").read_text())["result"] for d in (one, two))
    assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-5) and h2["val_top1"] == h1["val_top1"]
    log = (two / "log.txt").read_text()
    assert log.count("pretrain epoch 1/1") == 1 and "all-reduce" in log  # rank 0 alone logs


@needs_mpi
def test_a_run_resumes_with_another_number_of_ranks(runs, tmp_path):
    """A run of 2 ranks resumed by 1, and the reverse, continue the uninterrupted run whose
    first epoch had the same number of ranks (its float32 rounding grows over later epochs,
    so each is compared with the run that rounded its first epoch the same way)."""
    source = runs / "data" / "source"
    for ranks, started in ((1, "pre2"), (2, "pre1")):
        first = 3 - ranks
        straight = tmp_path / f"straight{first}"
        run("pretrain", "--data", source, "--epochs", 2, *TINY, "--out", straight, ranks=first)
        out = tmp_path / f"from-{started}"
        shutil.copytree(runs / started, out)
        run("pretrain", "--data", source, "--epochs", 2, *TINY, "--out", out, "--resume", ranks=ranks)
        assert relative_difference(straight / "source.npz", out / "source.npz") < 1e-4, started
        record = json.loads((out / "run.json").read_text())
        assert record["ranks"] == ranks and len(record["resumed"]) == 1 and record["finished"] is not None
        assert "resumed from" in (out / "log.txt").read_text()
        assert len((out / "history.csv").read_text().splitlines()) == 3


@needs_mpi
def test_a_transfer_resumes_with_another_number_of_ranks(runs, tmp_path):
    args = ["transfer", "--voc", runs / "data" / "VOCdevkit", "--weights", runs / "pre1" / "source.npz",
            *TRANSFER]
    run(*args, "--epochs", 4, "--out", tmp_path / "straight")
    for ranks in (1, 2):
        out = tmp_path / f"resumed-with-{ranks}"
        run(*args, "--epochs", 2, "--out", out, ranks=3 - ranks)
        run(*args, "--epochs", 4, "--out", out, "--resume", ranks=ranks)
        assert relative_difference(tmp_path / "straight" / "transfer.npz", out / "transfer.npz",
                                   layers=("fca", "fcb")) == 0
        assert (json.loads((out / "summary.json").read_text())["map"]
                == json.loads((tmp_path / "straight" / "summary.json").read_text())["map"])


@needs_mpi
def test_two_ranks_build_the_same_cache_and_reach_the_same_map(runs, tmp_path):
    args = ["transfer", "--voc", runs / "data" / "VOCdevkit", "--weights", runs / "pre1" / "source.npz",
            *TRANSFER]
    for ranks in (1, 2):
        run(*args, "--out", tmp_path / f"t{ranks}", ranks=ranks)
    (cache1,), (cache2,) = ((tmp_path / f"t{r}" / "cache").iterdir() for r in (1, 2))
    assert cache1.name == cache2.name
    for name in ("features.npy", "index.npz"):
        assert (cache1 / name).read_bytes() == (cache2 / name).read_bytes(), name
    one, two = (json.loads((tmp_path / f"t{r}" / "summary.json").read_text()) for r in (1, 2))
    assert two["map"] == one["map"] and two["ap"] == one["ap"]
    assert relative_difference(tmp_path / "t1" / "transfer.npz", tmp_path / "t2" / "transfer.npz",
                               layers=("fca", "fcb")) == 0
    assert json.loads((tmp_path / "t2" / "run.json").read_text())["ranks"] == 2


@needs_mpi
def test_with_batch_parts_an_epoch_of_the_demo_network_is_the_same_bytes_on_1_and_2_ranks(tmp_path):
    """``--batch-parts 2``: an epoch of the demo's source network (its widths, batch 64,
    dropout on, cpu backend; 810 training images, 13 steps) in one process with 2 kernel
    threads and in 2 ranks of 1 thread ends with the same bytes. Without it the runs round
    differently (a slice of the batch is not the whole batch for BLAS) and drift apart,
    8e-5 after 10 steps and 2e-2 after the demo's 64 (README)."""
    generate(tmp_path / "data", DataConfig(source_per_class=30, trainval=8, test=5), workers=1)
    p = DemoSettings().pretrain
    args = ["pretrain", "--data", tmp_path / "data" / "source", "--epochs", 1, "--model", p.model,
            "--input-size", p.input_size, "--resize", p.resize, "--channels", ",".join(map(str, p.channels)),
            "--hidden", p.hidden, "--batch-size", p.batch_size, "--lr", p.lr, "--workers", 1,
            "--backend", "cpu", "--batch-parts", 2]
    run(*args, "--out", tmp_path / "one", threads=2)
    run(*args, "--out", tmp_path / "two", ranks=2)
    assert (tmp_path / "one" / "source.npz").read_bytes() == (tmp_path / "two" / "source.npz").read_bytes()
    assert "13/13" in (tmp_path / "two" / "log.txt").read_text()


@needs_mpi
def test_with_batch_parts_a_run_resumed_with_another_number_of_ranks_is_the_uninterrupted_run(runs, tmp_path):
    """4 parts: each of 2 ranks sums 2 of them before the all-reduce, one process all 4 in a
    row; only the float64 sums make those orders give the same bits."""
    args = ["pretrain", "--data", runs / "data" / "source", *TINY, "--batch-parts", 4]
    run(*args, "--epochs", 2, "--out", tmp_path / "straight")
    for first, then in ((2, 1), (1, 2)):
        out = tmp_path / f"{first}-then-{then}"
        run(*args, "--epochs", 1, "--out", out, ranks=first)
        run(*args, "--epochs", 2, "--out", out, "--resume", ranks=then)
        assert (out / "source.npz").read_bytes() == (tmp_path / "straight" / "source.npz").read_bytes()


@needs_mpi
def test_a_failing_rank_ends_the_job_with_its_message(runs, tmp_path):
    args = ["pretrain", "--epochs", 1, *TINY, "--out", tmp_path / "p"]
    started = time.monotonic()
    err = run(*args, "--data", runs / "data" / "source",
              mpmd=[*args, "--data", tmp_path / "no-such-folder"], expect=2, timeout=120)
    assert "error (rank 1 of 2)" in err and "no-such-folder" in err and "does not exist" in err, err
    assert time.monotonic() - started < 60  # rank 0, waiting for rank 1, was ended too
    assert not (tmp_path / "p" / "source.npz").exists()


@needs_mpi
def test_ranks_started_with_different_settings_are_refused(runs, tmp_path):
    args = ["pretrain", "--data", runs / "data" / "source", "--epochs", 1, *TINY, "--out", tmp_path / "p"]
    err = run(*args, mpmd=[*args, "--lr", "0.02"], expect=2, timeout=120)
    assert err.count("were started with different settings") == 1, err  # rank 0 alone says it
    assert not (tmp_path / "p").exists()


@needs_mpi
def test_the_demo_and_reproduce_run_data_parallel(tmp_path):
    """``mpiexec -n 2 minicnn demo|reproduce --quick``: every stage over both ranks, rank 0
    writing, the same mAPs as one process."""
    config = Path(__file__).parents[1] / "experiments" / "configs" / "claims_generated.toml"
    for command, result in ((["demo"], "summary.json"), (["reproduce", config], "report.json")):
        maps = []
        for ranks in (1, 2):
            out = tmp_path / f"{command[0]}{ranks}"
            run(*command, "--quick", "--backend", "numpy", "--out", out, ranks=ranks)
            written = json.loads((out / result).read_text())
            maps.append(written["map"] if "map" in written else {n: r["map_per_seed"]
                                                                 for n, r in written["runs"].items()})
            assert json.loads((out / "run.json").read_text())["ranks"] == ranks
        assert maps[1] == maps[0], command


@needs_mpi
def test_a_branching_source_trains_the_same_bytes_on_1_and_2_ranks(runs, tmp_path):
    """A SqueezeNet-like source (fire modules: Joins) through update-top, whose gradients of
    fire3's branches are summed over the ranks: with --batch-parts 2 the trained layers of 1
    and 2 ranks are the same bytes, and the caches too."""
    from test_transfer_any_source import branching_source

    mc.set_backend("numpy")
    mc.seed(0)
    branching_source().save(tmp_path / "branching.npz")
    args = ["transfer", "--voc", runs / "data" / "VOCdevkit", "--weights", tmp_path / "branching.npz",
            *TRANSFER, "--variant", "update-top", "--epochs", "2"]
    for ranks in (1, 2):
        run(*args, "--out", tmp_path / f"t{ranks}", ranks=ranks)
    assert relative_difference(tmp_path / "t1" / "transfer.npz", tmp_path / "t2" / "transfer.npz",
                               layers=("fire3", "fca", "fcb")) == 0
    with np.load(tmp_path / "t1" / "transfer.npz") as trained, np.load(tmp_path / "branching.npz") as source:
        assert not np.array_equal(trained["fire3.expand3x3.weight"], source["fire3.expand3x3.weight"])
        assert np.array_equal(trained["fire2.expand3x3.weight"], source["fire2.expand3x3.weight"])
    (cache1,), (cache2,) = ((tmp_path / f"t{r}" / "cache").iterdir() for r in (1, 2))
    assert (cache1 / "features.npy").read_bytes() == (cache2 / "features.npy").read_bytes()


@needs_mpi
def test_batch_normalisation_trains_the_same_bytes_on_1_and_2_ranks(runs, tmp_path):
    """A source with batch normalisation, its last block trained (update-top): with
    --batch-parts 2 the running statistics, updated once per global step from every part's
    moments, are the same bytes on 1 and 2 ranks, as the weights are; and they moved."""
    from test_transfer_any_source import BGR_META

    from minicnn import layers as L

    mc.set_backend("numpy")
    mc.seed(0)
    layers = [L.Conv2D(3, 8, 3, stride=2), L.BatchNorm2D(8), L.ReLU(), L.MaxPool2D(2, 2),
              L.Conv2D(8, 8, 3, padding=1), L.BatchNorm2D(8), L.ReLU(), L.AvgPool2D(7, stride=1),
              L.Flatten(), L.Linear(8, 6)]
    names = ["conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2", "flatten", "fc"]
    source = mc.Sequential(layers, names, input_shape=(3, 32, 32), meta=BGR_META)
    source.save(tmp_path / "bn.npz")
    args = ["transfer", "--voc", runs / "data" / "VOCdevkit", "--weights", tmp_path / "bn.npz", *TRANSFER,
            "--variant", "update-top", "--cut", "bn2", "--update", "conv2,bn2", "--epochs", "2"]
    for ranks in (1, 2):
        run(*args, "--out", tmp_path / f"t{ranks}", ranks=ranks)
    with np.load(tmp_path / "t1" / "transfer.npz") as one, np.load(tmp_path / "t2" / "transfer.npz") as two:
        for key in ("bn2.running_mean", "bn2.running_var", "bn2.weight", "conv2.weight", "fcb.weight"):
            assert one[key].tobytes() == two[key].tobytes(), key
        assert not np.array_equal(one["bn2.running_mean"], source["bn2"].buffers["running_mean"])
        assert np.array_equal(one["bn1.running_mean"], source["bn1"].buffers["running_mean"])  # frozen

"""Data-parallel runs over MPI: ``mpiexec -n N minicnn pretrain|transfer ...``, NCCL on GPUs.

As in ChainerMN, minicnn brings no communication layer of its own: MPI (mpi4py) starts the
processes and carries the small messages, and the gradient all-reduce goes through MPI's
``Allreduce`` on NumPy buffers (backends numpy and cpu) or through NCCL on GPU buffers
(backend cuda, CuPy's ``cupy.cuda.nccl``, one GPU per rank chosen by its rank on the
machine). A process not started by an MPI launcher never imports mpi4py: it is rank 0 of
1, and every function here is then the identity, so a single process runs exactly as
before, with or without MPI installed.

The result does not depend on N (to float rounding): every rank takes its contiguous
slice (:func:`shard`) of the same global batch; the dropout masks are drawn for the whole
global batch on every rank and each keeps its rows (``minicnn.ops.dropout.global_batch``),
the random crops of each slice are those the whole batch would get (``minicnn.pretrain``);
the loss gradient of a slice is scaled by its share of the global batch and the gradients
are summed over the ranks (:func:`allreduce_gradients`) before each SGD step, so the step
is the one a single process takes on the global batch. Nothing else couples samples (no
batch normalisation here). To the bit, with ``--batch-parts P`` (``minicnn.training``):
every N dividing P then computes the same parts of each batch and the same float64 sums.

Rank 0 alone writes (checkpoints, run.json, logs, caches, results); the others compute.
A rank that fails stops every rank (``minicnn.cli`` calls :func:`abort`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from minicnn import backend
from minicnn.errors import InputError, JobInputError

# What a launcher sets in each process it starts: MPICH/Intel MPI (PMI), Open MPI, PMIx
# (Open MPI 5, Slurm's srun --mpi=pmix), MVAPICH. MINICNN_MPI=1 forces the check.
_LAUNCH_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# Gradients travel in messages of at most this size: a few large messages per step
# (latency paid a few times, not once per parameter), without one copy of all gradients
# at once beside them.
BUCKET_BYTES = 64 << 20
# A failing rank waits this long after printing its message before ending the job: the
# launcher forwards a rank's output through a pipe, and MPI_Abort's kill could beat it.
ABORT_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size``, ``comm`` (an mpi4py
    communicator, None in a single process), ``local_rank``/``local_size`` on its machine."""

    rank: int = 0
    size: int = 1
    comm: object = None
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0


_world: World | None = None
_nccl = None
# seconds spent in the gradient all-reduce and the number of all-reduces, for the logs
stats = {"allreduce_seconds": 0.0, "allreduces": 0}


def launched_by_mpi() -> bool:
    return os.environ.get("MINICNN_MPI") == "1" or any(v in os.environ for v in _LAUNCH_VARIABLES)


def world() -> World:
    """This process's :class:`World`, found once (mpi4py is imported only under a launcher)."""
    global _world
    if _world is None:
        _world = _find_world()
    return _world


def _find_world() -> World:
    if not launched_by_mpi():
        return World()
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise InputError(f"started by an MPI launcher, but mpi4py cannot be imported ({e}); "
                         "pip install 'minicnn[distributed]' (or mpi4py built for the site's MPI)") from None
    comm = MPI.COMM_WORLD
    launched = max([int(os.environ[v]) for v in _SIZE_VARIABLES if os.environ.get(v, "").isdigit()] or [1])
    if comm.Get_size() != launched:  # each process would run alone and write the same files
        raise InputError(f"the launcher started {launched} processes but mpi4py's MPI sees "
                         f"{comm.Get_size()}: mpi4py is built for another MPI than this mpiexec "
                         "(use the mpiexec of the MPI that mpi4py uses)")
    if comm.Get_size() == 1:  # mpiexec -n 1: the single-process path, unchanged
        return World()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local = (node.Get_rank(), node.Get_size())
    node.Free()
    return World(comm.Get_rank(), comm.Get_size(), comm, *local)


def is_root() -> bool:
    """True in rank 0 (and in a single process): the one process that writes."""
    return world().is_root


def shard(n: int, w: World | None = None) -> slice:
    """This rank's contiguous part of ``n`` items in rank order, the parts' sizes differing
    by at most one (a part may be empty when ``n`` < the number of ranks)."""
    w = w or world()
    return slice(n * w.rank // w.size, n * (w.rank + 1) // w.size)


def global_rows(n_local: int) -> tuple[int, int]:
    """(first row of this rank's slice in the global batch, rows of the global batch),
    from every rank's count (a slice may have lost unreadable images)."""
    w = world()
    if w.size == 1:
        return 0, n_local
    counts = w.comm.allgather(int(n_local))
    return sum(counts[: w.rank]), sum(counts)


def sum_values(values):
    """Element-wise sum of a few numbers over the ranks (float64, exact for counts)."""
    w = world()
    values = np.asarray(values, dtype=np.float64)
    if w.size == 1:
        return values
    out = np.empty_like(values)
    w.comm.Allreduce(values, out)
    return out


def gather_rows(rows: np.ndarray) -> np.ndarray:
    """Every rank's ``rows`` (a host array; the same dtype and trailing shape on every rank,
    an empty part included), concatenated in rank order, on every rank."""
    w = world()
    if w.size == 1:
        return rows
    rows = np.ascontiguousarray(rows)
    counts = w.comm.allgather(len(rows))
    out = np.empty((sum(counts), *rows.shape[1:]), dtype=rows.dtype)
    per_row = int(np.prod(rows.shape[1:], dtype=np.int64))
    w.comm.Allgatherv(rows, [out, [c * per_row for c in counts]])
    return out


def allgather(obj) -> list:
    """Every rank's ``obj`` (small, picklable), in rank order, on every rank."""
    w = world()
    return [obj] if w.size == 1 else w.comm.allgather(obj)


def broadcast(obj):
    """Rank 0's ``obj`` (small, picklable) on every rank; the others wait for it."""
    w = world()
    return obj if w.size == 1 else w.comm.bcast(obj, root=0)


def gather_to_root(obj) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0 (None on the others)."""
    w = world()
    return [obj] if w.size == 1 else w.comm.gather(obj, root=0)


def barrier():
    w = world()
    if w.size > 1:
        w.comm.Barrier()


def check_same(what: str, value):
    """Refuse to start when the ranks disagree on ``value`` (JSON-able settings): compare a
    hash of it from every rank, and name the ranks that differ from rank 0."""
    w = world()
    if w.size == 1:
        return
    digest = hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    digests = w.comm.allgather(digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise JobInputError(f"the {w.size} ranks were started with different {what}: rank(s) "
                            f"{', '.join(map(str, differ))} differ from rank 0; launch every rank with "
                            "the same command, data and files")


def _trainable(net):
    return [(layer, key) for layer in net.trainable_layers() for key in layer.params]


def allreduce_gradients(net, computed=True):
    """Sum the gradients of ``net``'s trainable layers over the ranks, in place, in buckets
    of at most :data:`BUCKET_BYTES`. ``computed=False``: this rank's slice of the global
    batch was empty, it contributes zeros. Identity in a single process."""
    w = world()
    if w.size == 1:
        return
    started = time.perf_counter()
    slots = _trainable(net)
    grads = [layer.grads.get(key) if computed else None for layer, key in slots]
    grads = [_zeros_like(layer.params[key]) if g is None else g
             for g, (layer, key) in zip(grads, slots, strict=True)]
    bucket, size = [], 0
    for i, g in enumerate(grads):
        if bucket and (size + g.nbytes > BUCKET_BYTES or g.dtype != grads[bucket[0]].dtype):
            _reduce_bucket(w, slots, grads, bucket)
            bucket, size = [], 0
        bucket.append(i)
        size += g.nbytes
    if bucket:
        _reduce_bucket(w, slots, grads, bucket)
    stats["allreduce_seconds"] += time.perf_counter() - started
    stats["allreduces"] += 1


def _zeros_like(param):
    from minicnn.backend import array_module

    return array_module(param).zeros_like(param)


def _reduce_bucket(w, slots, grads, bucket):
    from minicnn.backend import array_module

    xp = array_module(grads[bucket[0]])
    flat = xp.concatenate([grads[i].ravel() for i in bucket])
    if xp is np:
        from mpi4py import MPI

        w.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    else:
        _nccl_allreduce(w, flat)
    offset = 0
    for i in bucket:  # the summed gradients are views of the bucket: no copy back
        layer, key = slots[i]
        g = grads[i]
        layer.grads[key] = flat[offset : offset + g.size].reshape(g.shape)
        offset += g.size


def _nccl_allreduce(w, flat):
    """In-place sum of a CuPy array over the ranks with NCCL, on CuPy's current stream (so
    it is ordered after the backward that produced it and before the SGD step). The NCCL
    communicator is made once, its unique id broadcast from rank 0 over MPI.
    Tested against a stand-in for CuPy's nccl module; not yet run on a GPU."""
    global _nccl
    import cupy
    from cupy.cuda import nccl

    if _nccl is None:
        uid = w.comm.bcast(nccl.get_unique_id() if w.is_root else None, root=0)
        _nccl = nccl.NcclCommunicator(w.size, uid, w.rank)
    kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
    _nccl.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kinds[np.dtype(flat.dtype)], nccl.NCCL_SUM,
                    cupy.cuda.get_current_stream().ptr)


def use_local_gpu():
    """One GPU per rank: the rank with local rank i on its machine sees only the i-th GPU
    (``CUDA_VISIBLE_DEVICES``, set before anything initialises CUDA, so CuPy, numba.cuda and
    every thread agree on it). A launcher that already gave each rank one GPU is left alone.
    (An MPI that initialises CUDA inside MPI_Init would come first: then set
    CUDA_VISIBLE_DEVICES per rank in the launch script.) Untested on GPUs here."""
    w = world()
    if w.size == 1 or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(w.local_rank)
        return
    devices = [d for d in visible.split(",") if d.strip()]
    if len(devices) == 1:
        return
    if len(devices) < w.local_size:
        raise InputError(f"{w.local_size} ranks on this machine but CUDA_VISIBLE_DEVICES={visible} names "
                         f"{len(devices)} GPU(s): the cuda backend takes one GPU per rank")
    os.environ["CUDA_VISIBLE_DEVICES"] = devices[w.local_rank]


def share_cores():
    """Ranks on one machine share its cores: unless NUMBA_NUM_THREADS says otherwise, each
    runs cores / (ranks on the machine) kernel threads, not all cores each (which would
    oversubscribe them)."""
    w = world()
    if w.local_size == 1 or "NUMBA_NUM_THREADS" in os.environ:
        return
    backend.set_kernel_threads((os.cpu_count() or 1) // w.local_size)


def abort(code=2):
    """End every rank of the job now (a rank that failed must not leave the others
    waiting in a collective for ever)."""
    try:
        w = world()
    except InputError:  # no usable mpi4py: there is nothing to abort
        return
    if w.size > 1:
        time.sleep(ABORT_GRACE_SECONDS)
        w.comm.Abort(code)

"""Finite-difference gradient checks, in float64 (Caffe's checker, Chainer's directional check).

A layer is checked through the scalar ``f = sum(forward(x) * R)`` for a fixed random R,
so backward(R) must give df/dx and df/dparams. A network is checked through its loss
(softmax cross-entropy against ``labels``). Numeric derivatives use the five-point
central stencil, accurate to O(h^4), so that a step h = 1e-3 keeps both truncation and
round-off far below the tolerance, even for tiny gradient entries:

    n(h) = (-f(t + 2h) + 8 f(t + h) - 8 f(t - h) + f(t - 2h)) / (12 h)

and the error of an analytic derivative a is ``(|a - n| - r) / max(|a|, |n|, 1e-8)`` (0 when
negative), where r, the stencil's round-off, is what the estimate cannot resolve: each
evaluation of f is exact to a few units in the last place (ulp) of |f| at best, and the
stencil's weights sum to 18/12, so ``r = 1.5 * ROUNDOFF_ULPS * ulp(max |f|) / h`` (about 3e-12
for |f| ~ 3, h = 1e-3). Without r, an element whose true derivative is 0 fails whenever the
forward is not bitwise blind to it: the cpu backend's Winograd convolutions compute each
output tile from the whole input tile, whose rational cancellations leave ulps in float64,
so the loss moves by an ulp or two when a dead input moves, n = ulp / h, and
|a - n| / 1e-8 was 6e-5 at h = 1e-3 and grew as 1/h.

* ``mode="directional"``: one random unit direction v over all inputs and parameters;
  compares <grad, v> with the numeric derivative along v. Cheap: eight evaluations.
* ``mode="exhaustive"``: every element; reports the worst element's index.

Kinks (ReLU at 0, a max-pool tie) within reach of the stencil make it wrong. They are
found without looking at the analytic gradient, in two ways. As Caffe's checker keeps a
window around each kink, every evaluation's piece is compared with the unperturbed
forward's: ReLU's and Clip's outputs at a bound or not, max pooling's argmax
(:func:`pieces`); any change within the stencil's reach [-2h, 2h] is a kink, however small
its effect. (The estimates with steps h and h/2 alone miss kinks: both straddle one and err
alike, or only the outermost point of the h-stencil does and it errs by less than kink_tol;
on the numpy backend, seed 1, the tiny AlexNet-like net failed by 1e-3 so.) And for other
non-smooth functions, the h- and h/2-estimates disagree (on smooth ground they agree to
~1e-10). Near a kink the step shrinks to h/8, then h/64; an element whose stencil still
reaches a kink is counted as a kink and left out of the worst error. Inputs from
:func:`kinkless_input` avoid kinks by construction. Dropout masks stay fixed: the backend
is re-seeded before every forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minicnn import backend
from minicnn.errors import InputError
from minicnn.ops.softmax_xent import softmax_cross_entropy


@dataclass
class CheckResult:
    """Worst relative error per checked tensor ("input", "<layer>.<param>", or "direction")."""

    errors: dict = field(default_factory=dict)       # tensor -> worst relative error
    worst_index: dict = field(default_factory=dict)  # tensor -> index of worst element (exhaustive)
    kinks: dict = field(default_factory=dict)        # tensor -> number of kinks skipped
    mode: str = "directional"

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def passed(self, tol=1e-6) -> bool:
        return self.max_error <= tol

    def table(self) -> str:
        lines = [f"{'tensor':<24} {'max rel. error':>14}  {'worst index':<16} kinks"]
        for name, err in self.errors.items():
            idx = self.worst_index.get(name)
            lines.append(f"{name:<24} {err:>14.3e}  {str(idx) if idx is not None else '-':<16} "
                         f"{self.kinks.get(name, 0)}")
        return "\n".join(lines)


# ulps of |f| within which a float64 forward is taken to be exact (module doc): the cpu
# backend's tiny AlexNet-like net moves its loss by 2 ulp where the true derivative is 0
ROUNDOFF_ULPS = 4


def relative_error(a, n, resolution=0.0):
    """``|a - n|`` beyond ``resolution`` (the numeric estimate's round-off), relative to the
    larger of |a| and |n| (at least 1e-8)."""
    return max(abs(a - n) - resolution, 0.0) / max(abs(a), abs(n), 1e-8)


def _stencil(f_at, h):
    """Five-point derivative of ``f_at(delta)`` at 0, summed as differences so that an
    input the function ignores gives exactly 0."""
    return (8 * (f_at(h) - f_at(-h)) - (f_at(2 * h) - f_at(-2 * h))) / (12 * h)


def _numeric(f_at, h, kink_tol, piece_changed=None):
    """(derivative, is_kink, resolution) of ``f_at`` at 0: the five-point estimate with the
    first step of h, h/8, h/64 whose stencil neither leaves the unperturbed forward's pieces
    (``piece_changed()`` after each evaluation) nor disagrees with the half step's; a kink
    when none does; and the estimate's round-off (module doc)."""
    for step in (h, h / 8, h / 64):
        largest, left_piece = 0.0, False

        def f(delta):
            nonlocal largest, left_piece
            value = f_at(delta)
            largest = max(largest, abs(value))
            left_piece = left_piece or bool(piece_changed and piece_changed())
            return value

        coarse, fine = _stencil(f, step), _stencil(f, step / 2)
        resolution = 1.5 * ROUNDOFF_ULPS * float(np.spacing(largest)) / step
        # round-off of the two estimates together: the half step's is twice the step's
        noise = 1e-9 + 3 * resolution
        if not left_piece and abs(coarse - fine) <= kink_tol * max(abs(coarse), abs(fine)) + noise:
            return coarse, False, resolution
    return coarse, True, resolution


def pieces(layers) -> list:
    """The linear piece each piecewise layer of ``layers`` ran on in its last forward (kept
    for its backward): ReLU's output > 0, Clip's output at its lower or upper bound, max
    pooling's argmax; smooth layers give nothing. Two forwards on the same pieces are one
    smooth function of the inputs and parameters between them (the module doc's kinks)."""
    from minicnn import layers as L

    found = []
    for layer in layers:
        if isinstance(layer, L.ReLU):
            found.append(backend.to_numpy(layer._saved_tensors()[0]) > 0)
        elif isinstance(layer, L.Clip):
            y, (lo, hi) = backend.to_numpy(layer._saved_tensors()[0]), layer._bounds()
            found += [y <= lo, y >= hi]
        elif isinstance(layer, L.MaxPool2D):
            found.append(backend.to_numpy(layer._saved_tensors()[0]))
    return found


def _piece_watch(leaves):
    """A function telling whether the last forward of ``leaves`` ran on other pieces than
    the forward just before this call (the unperturbed one)."""
    base = pieces(leaves)

    def changed():
        return any(not np.array_equal(a, b) for a, b in zip(pieces(leaves), base, strict=True))

    return changed


def _check(evaluate, analytic: dict, tensors: dict, mode, eps, kink_tol, seed,
           piece_changed=None) -> CheckResult:
    """Compare ``analytic`` gradients with numeric derivatives of ``evaluate()`` over the
    (mutable, float64, contiguous) ``tensors``; ``piece_changed()``, after an evaluation,
    whether it left the unperturbed forward's pieces (:func:`pieces`)."""
    if not eps > 0 or not np.isfinite(eps):  # also NaN: the stencil would divide by 12 * eps
        raise InputError(f"gradcheck: eps (the stencil's step) must be a finite number > 0, got {eps}")
    result = CheckResult(mode=mode)
    if mode == "directional":
        rng = np.random.default_rng(seed)
        dirs = {k: rng.standard_normal(t.shape) for k, t in tensors.items()}
        norm = np.sqrt(sum((d * d).sum() for d in dirs.values()))
        dirs = {k: backend.asarray(d / norm) for k, d in dirs.items()}
        a = sum(float((analytic[k] * d).sum()) for k, d in dirs.items())
        saved = {k: t.copy() for k, t in tensors.items()}

        def along(delta):
            for k, t in tensors.items():
                t[...] = saved[k] + delta * dirs[k]
            return evaluate()

        n, kink, resolution = _numeric(along, eps, kink_tol, piece_changed)
        for k, t in tensors.items():
            t[...] = saved[k]
        result.kinks["direction"] = int(kink)
        result.errors["direction"] = 0.0 if kink else relative_error(a, n, resolution)
        return result
    if mode != "exhaustive":
        raise InputError(f"gradcheck: mode must be 'directional' or 'exhaustive', got {mode!r}")
    for k, t in tensors.items():
        a = backend.to_numpy(analytic[k]).reshape(-1)
        flat = t.reshape(-1)  # a view: tensors are contiguous
        worst, worst_idx, kinks = 0.0, None, 0
        for i in range(flat.size):
            old = float(flat[i])

            def at(delta, flat=flat, i=i, old=old):
                flat[i] = old + delta
                return evaluate()

            n, kink, resolution = _numeric(at, eps, kink_tol, piece_changed)
            flat[i] = old
            if kink:
                kinks += 1
                continue
            err = relative_error(float(a[i]), n, resolution)
            if err >= worst:
                worst, worst_idx = err, np.unravel_index(i, t.shape)
        result.errors[k] = worst
        result.worst_index[k] = tuple(int(j) for j in worst_idx) if worst_idx is not None else None
        result.kinks[k] = kinks
    return result


def _require_float64(what, arrays):
    for name, a in arrays.items():
        if np.dtype(a.dtype) != np.float64:
            raise ValueError(f"gradcheck: {what} {name!r} is {a.dtype}; gradient checks run in "
                             "float64 (build the layer or net with dtype=np.float64)")


def check_layer(layer, x, mode="directional", eps=1e-3, kink_tol=1e-4, seed=0,
                check_input=True) -> CheckResult:
    """Check ``layer.backward`` against central differences at input ``x`` (float64). A block
    or a Join (a container) is checked with the parameters of every layer in it."""
    x = backend.asarray(np.array(backend.to_numpy(x), dtype=np.float64))
    leaves = layer.named_layers(f"{layer.name}.") if hasattr(layer, "named_layers") else [(layer.name, layer)]
    tensors = {f"{path}.{k}": p for path, leaf in leaves for k, p in leaf.params.items()}
    _require_float64("parameter", tensors)
    rng = np.random.default_rng(seed + 1)

    def run():
        backend.seed(seed)
        return layer.forward(x, train=True)

    y = run()
    weights = backend.asarray(rng.standard_normal(tuple(y.shape)))
    layer.need_input_grad = True
    frozen = {path: leaf.frozen for path, leaf in leaves}
    layer.frozen = False
    try:
        run()
        dx = layer.backward(weights)
        analytic = {f"{path}.{k}": g for path, leaf in leaves for k, g in leaf.grads.items()}
        if check_input:
            analytic["input"], tensors["input"] = dx, x
        run()
        return _check(lambda: float((run() * weights).sum()), analytic, tensors, mode, eps,
                      kink_tol, seed, _piece_watch([leaf for _, leaf in leaves]))
    finally:
        for path, leaf in leaves:
            leaf.frozen = frozen[path]


def check_net(net, x, labels, mode="directional", eps=1e-3, kink_tol=1e-4, seed=0,
              check_input=True) -> CheckResult:
    """Check a whole network's backward pass through its softmax cross-entropy loss."""
    x = backend.asarray(np.array(backend.to_numpy(x), dtype=np.float64))
    params = {name: p for name, p, _ in net.named_params()
              if not net[name.rsplit(".", 1)[0]].frozen}
    _require_float64("parameter", params)

    def loss():
        backend.seed(seed)
        return softmax_cross_entropy(net.forward(x, train=True), labels)

    _, dlogits = loss()
    dx = net.backward(dlogits, input_grad=check_input)
    analytic = {name: g for name, _, g in net.named_params() if name in params}
    tensors = dict(params)
    if check_input:
        analytic["input"], tensors["input"] = dx, x
    loss()
    return _check(lambda: float(loss()[0]), analytic, tensors, mode, eps, kink_tol, seed,
                  _piece_watch([leaf for _, leaf in net.named_layers()]))


def check_loss(logits, labels, weights=None, mode="directional", eps=1e-3, kink_tol=1e-4,
               seed=0) -> CheckResult:
    """Check the gradient of the softmax cross-entropy (optionally per-sample weighted)
    with respect to the logits (float64)."""
    z = backend.asarray(np.array(backend.to_numpy(logits), dtype=np.float64))
    _, dz = softmax_cross_entropy(z, labels, weights=weights)
    return _check(lambda: float(softmax_cross_entropy(z, labels, weights=weights)[0]),
                  {"logits": dz}, {"logits": z}, mode, eps, kink_tol, seed)


def kinkless_input(shape, rng=None, gap=None):
    """Distinct values, at least ``gap`` apart and ``gap/2`` away from 0, in random order:
    no ReLU kink and no max-pool tie within reach of the stencil (default gap: 2/size,
    at least 0.01)."""
    rng = rng or np.random.default_rng(0)
    n = int(np.prod(shape))
    gap = gap or max(2.0 / n, 0.01)
    k = np.arange(n)
    values = (k // 2 + 0.5) * gap * np.where(k % 2, -1.0, 1.0)
    return rng.permutation(values).reshape(shape).astype(np.float64)


def standard_cases(rng=None):
    """(name, layer, input) for every op, small float64 shapes with no kinks: the checks
    ``minicnn gradcheck`` runs and the test suite pins."""
    from minicnn import layers as L

    rng = rng or np.random.default_rng(0)
    f64 = np.float64
    return [
        ("conv2d", L.Conv2D(3, 4, 3, stride=1, padding=1, dtype=f64), kinkless_input((2, 3, 5, 5), rng)),
        ("conv2d stride 2 pad 2", L.Conv2D(2, 3, 3, stride=2, padding=2, dtype=f64),
         kinkless_input((2, 2, 6, 7), rng)),
        ("conv2d groups 2", L.Conv2D(4, 6, (3, 2), stride=(1, 2), padding=(1, 0), groups=2, dtype=f64),
         kinkless_input((2, 4, 5, 6), rng)),
        ("max_pool2d floor", L.MaxPool2D(3, 2), kinkless_input((2, 2, 7, 7), rng)),
        ("max_pool2d ceil pad 1", L.MaxPool2D(3, 2, padding=1, ceil_mode=True),
         kinkless_input((2, 2, 6, 6), rng)),
        ("relu", L.ReLU(), kinkless_input((3, 7), rng)),
        ("lrn size 5", L.LRN(5, alpha=0.5, beta=0.75, k=2.0), kinkless_input((2, 7, 3, 3), rng, 0.1)),
        ("lrn size 4", L.LRN(4, alpha=0.5, beta=0.75, k=0.5), kinkless_input((2, 6, 2, 3), rng, 0.1)),
        ("dropout", L.Dropout(0.5), kinkless_input((4, 9), rng)),
        ("linear", L.Linear(6, 4, dtype=f64), kinkless_input((3, 6), rng)),
        ("flatten", L.Flatten(), kinkless_input((2, 3, 2, 2), rng)),
        # (later additions at the end: the inputs above draw from rng what they drew before)
        ("conv2d dilated, padded per side", L.Conv2D(2, 3, 3, stride=2, padding=(0, 1, 1, 0), dilation=2,
                                                     dtype=f64), kinkless_input((2, 2, 7, 6), rng)),
        ("conv2d depthwise", L.Conv2D(3, 6, 3, padding=1, groups=3, dtype=f64),
         kinkless_input((2, 3, 4, 5), rng)),
        ("batch_norm training", L.BatchNorm2D(3, dtype=f64), kinkless_input((2, 3, 3, 2), rng)),
        ("clip (relu6)", L.Clip(0.0, 6.0), kinkless_input((3, 7), rng) * 10),
    ]

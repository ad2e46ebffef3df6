"""Import a pretrained network (ONNX, or Caffe prototxt + caffemodel or Deep Compression file)
as a minicnn .npz.

The result is a source network for `minicnn transfer --weights`: layers named by position
as minicnn's AlexNet (conv1..conv5, norm1, pool1, ..., fc6, fc7, fc8), the forward equal to
the source framework's on the same input array, a trailing softmax dropped (the network
outputs logits). The preprocessing it expects goes into its metadata: channel order (Caffe
models are BGR; an ONNX model is taken as RGB unless --bgr), per-channel mean and standard
deviation on the 0-255 pixel scale, input size, class list. The command prints the source
file's sha256 and sha1 and says whether the sha1 is a known published one.

A network that branches (SqueezeNet's fire modules: a Caffe Concat or Eltwise) keeps Caffe's
layer names, grouped in blocks (fire2/expand3x3 -> fire2.expand3x3); an imported SqueezeNet
is named as minicnn.models.squeezenet. --deep-compression reads Han et al.'s compressed
weights (compressed_SqueezeNet.net of songhan/SqueezeNet-Deep-Compression) in place of a
caffemodel; that published file gets its training mean (B G R 104 117 123) unless --mean
is given.

--mean and --std are given in R G B order whatever the network's channel order; they are
stored in the network's own order. A Caffe mean file (.binaryproto or .npy, 3 x 256 x 256,
BGR) becomes its per-channel mean; --mean overrides it.

Examples:
  minicnn import-weights alexnet.onnx --out source.npz --classes imagenet.txt \\
      --mean 123.675 116.28 103.53 --std 58.395 57.12 57.375
  minicnn import-weights deploy.prototxt --caffemodel bvlc_alexnet.caffemodel \\
      --mean-file imagenet_mean.binaryproto --classes synset_words.txt --out source.npz
  minicnn import-weights SqueezeNet_deploy.prototxt --deep-compression compressed_SqueezeNet.net \\
      --classes synset_words.txt --out squeezenet.npz
"""

from __future__ import annotations

import os


def add_arguments(p):
    p.add_argument("model", help="MODEL.onnx, or a Caffe deploy .prototxt (with --caffemodel or "
                   "--deep-compression)")
    p.add_argument("--caffemodel", default=None, help="the Caffe weights of a .prototxt")
    p.add_argument("--deep-compression", default=None, metavar="FILE.net",
                   help="the weights of a .prototxt as a Deep Compression file (Han et al.), "
                        "in place of --caffemodel")
    p.add_argument("--out", required=True, help="the network to write (.npz)")
    p.add_argument("--classes", default=None, help="class list: one name per line, in output order")
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), default=None,
                   help="per-channel mean to subtract, 0-255 scale, R G B order")
    p.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), default=None,
                   help="per-channel standard deviation to divide by, 0-255 scale, R G B order")
    p.add_argument("--bgr", action="store_true",
                   help="the ONNX model takes BGR input (Caffe models always do)")
    p.add_argument("--mean-file", default=None, help="Caffe mean image (.binaryproto or .npy)")
    p.add_argument("--input-size", type=int, default=None,
                   help="input height and width, for an ONNX model that leaves them open")


def _check_not_empty(path):
    """An empty input file is named as such before any reader guesses at what it lacks."""
    from minicnn.errors import InputError

    if path is not None and os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")


def _in_network_order(values, order):
    return None if values is None else (list(values)[::-1] if order == "BGR" else list(values))


def run(args) -> int:
    from minicnn import interop
    from minicnn.data.folders import read_class_list, write_class_list
    from minicnn.errors import InputError

    classes = read_class_list(args.classes) if args.classes else None
    compressed = args.deep_compression
    is_caffe = args.model.endswith(".prototxt") or args.caffemodel is not None or compressed is not None
    for path in (args.model, args.caffemodel, compressed, args.mean_file):
        _check_not_empty(path)
    if is_caffe:
        if args.caffemodel is not None and compressed is not None:
            raise InputError("give the Caffe weights once: --caffemodel or --deep-compression")
        if args.caffemodel is None and compressed is None:
            raise InputError(f"{args.model}: a Caffe prototxt needs --caffemodel W.caffemodel "
                             "(or --deep-compression W.net)")
        if args.input_size is not None:
            raise InputError("--input-size is for ONNX models; a prototxt gives its input size")
        order = "BGR"
        net = interop.from_caffe(args.model, args.caffemodel, deep_compression=compressed,
                                 mean_file=args.mean_file, mean=_in_network_order(args.mean, order),
                                 std=_in_network_order(args.std, order), classes=classes)
        source = args.caffemodel or compressed
    else:
        if args.mean_file is not None:
            raise InputError("--mean-file is for Caffe models; give --mean R G B")
        order = "BGR" if args.bgr else "RGB"
        net = interop.from_onnx(args.model, channel_order=order, mean=_in_network_order(args.mean, order),
                                std=_in_network_order(args.std, order), classes=classes,
                                input_size=args.input_size)
        source = args.model
    meta = net.meta
    net.summary()
    dropped = " (the source's trailing Softmax dropped)" if meta.get("softmax_dropped") else ""
    print(f"output: logits{dropped}; "
          f"input {meta.get('input_size')} pixels, {meta['channel_order']}, mean {meta['mean']}, "
          f"std {meta['std']} (network channel order)")
    from minicnn.interop.layout import KNOWN_SHA1

    known = KNOWN_SHA1.get(meta["source_sha1"])
    print(f"{os.path.basename(source)}: sha256 {meta['source_sha256']}")
    print(f"{os.path.basename(source)}: sha1 {meta['source_sha1']} "
          + (f"matches the published sha1 of {known}" if known else "is not a known published sha1"))
    for note in meta.get("import_notes", []):
        print(f"note: {note}")
    net.save(args.out)
    if classes:
        write_class_list(args.out, classes)
    print(f"wrote {args.out}")
    return 0

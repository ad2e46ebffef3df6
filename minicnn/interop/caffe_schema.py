"""The part of Caffe's ``caffe.proto`` that an import reads, as protobuf messages built in code.

No Caffe install and no generated ``caffe_pb2``: the message descriptors are made here with
``descriptor_pb2`` and turned into classes by ``message_factory``. The field numbers, types
and defaults are those of BVLC Caffe's ``src/caffe/proto/caffe.proto`` (they are what the
files hold); only the fields an import uses are declared. The binary parser keeps the other
fields as unknown fields, and the text parser is told to skip them
(:func:`parse_prototxt`), so train/val prototxts with fillers, ``param`` blocks and data
layers still read.

Both storage formats of a network are here: ``layer`` (LayerParameter, field 100, string
types, blobs with a ``BlobShape``) and the older ``layers`` (V1LayerParameter, field 2, enum
types, blobs with num/channels/height/width), in which the 2014 BVLC models are stored.
"""

from __future__ import annotations

from minicnn.errors import InputError, shown

PACKAGE = "caffe"

# message -> [(field, number, label, type, message or enum type, default)]
# label: "?" optional, "*" repeated, "*p" repeated packed
_MESSAGES = {
    "BlobShape": [("dim", 1, "*p", "int64")],
    "BlobProto": [
        ("shape", 7, "?", "message", "BlobShape"),
        ("data", 5, "*p", "float"), ("diff", 6, "*p", "float"),
        ("double_data", 8, "*p", "double"), ("double_diff", 9, "*p", "double"),
        ("num", 1, "?", "int32", None, "0"), ("channels", 2, "?", "int32", None, "0"),
        ("height", 3, "?", "int32", None, "0"), ("width", 4, "?", "int32", None, "0"),
    ],
    "NetParameter": [
        ("name", 1, "?", "string"), ("input", 3, "*", "string"),
        ("input_shape", 8, "*", "message", "BlobShape"), ("input_dim", 4, "*", "int32"),
        ("layer", 100, "*", "message", "LayerParameter"),
        ("layers", 2, "*", "message", "V1LayerParameter"),
    ],
    "NetStateRule": [("phase", 1, "?", "enum", "Phase")],
    "TransformationParameter": [
        ("scale", 1, "?", "float", None, "1"), ("mirror", 2, "?", "bool", None, "false"),
        ("crop_size", 3, "?", "uint32", None, "0"), ("mean_file", 4, "?", "string"),
        ("mean_value", 5, "*", "float"),
    ],
    "LayerParameter": [
        ("name", 1, "?", "string"), ("type", 2, "?", "string"),
        ("bottom", 3, "*", "string"), ("top", 4, "*", "string"),
        ("phase", 10, "?", "enum", "Phase"),
        ("blobs", 7, "*", "message", "BlobProto"),
        ("include", 8, "*", "message", "NetStateRule"),
        ("exclude", 9, "*", "message", "NetStateRule"),
        ("transform_param", 100, "?", "message", "TransformationParameter"),
        ("concat_param", 104, "?", "message", "ConcatParameter"),
        ("convolution_param", 106, "?", "message", "ConvolutionParameter"),
        ("dropout_param", 108, "?", "message", "DropoutParameter"),
        ("eltwise_param", 110, "?", "message", "EltwiseParameter"),
        ("inner_product_param", 117, "?", "message", "InnerProductParameter"),
        ("input_param", 143, "?", "message", "InputParameter"),
        ("lrn_param", 118, "?", "message", "LRNParameter"),
        ("pooling_param", 121, "?", "message", "PoolingParameter"),
        ("relu_param", 123, "?", "message", "ReLUParameter"),
        ("softmax_param", 125, "?", "message", "SoftmaxParameter"),
        ("flatten_param", 135, "?", "message", "FlattenParameter"),
        ("batch_norm_param", 139, "?", "message", "BatchNormParameter"),
        ("scale_param", 142, "?", "message", "ScaleParameter"),
    ],
    "BatchNormParameter": [("use_global_stats", 1, "?", "bool"),
                           ("moving_average_fraction", 2, "?", "float", None, "0.999"),
                           ("eps", 3, "?", "float", None, "1e-5")],
    "ScaleParameter": [("axis", 1, "?", "int32", None, "1"), ("num_axes", 2, "?", "int32", None, "1"),
                       ("bias_term", 4, "?", "bool", None, "false")],
    "ConvolutionParameter": [
        ("num_output", 1, "?", "uint32"), ("bias_term", 2, "?", "bool", None, "true"),
        ("pad", 3, "*", "uint32"), ("kernel_size", 4, "*", "uint32"),
        ("stride", 6, "*", "uint32"), ("dilation", 18, "*", "uint32"),
        ("pad_h", 9, "?", "uint32", None, "0"), ("pad_w", 10, "?", "uint32", None, "0"),
        ("kernel_h", 11, "?", "uint32"), ("kernel_w", 12, "?", "uint32"),
        ("stride_h", 13, "?", "uint32"), ("stride_w", 14, "?", "uint32"),
        ("group", 5, "?", "uint32", None, "1"), ("axis", 16, "?", "int32", None, "1"),
    ],
    "ConcatParameter": [("axis", 2, "?", "int32", None, "1"),
                        ("concat_dim", 1, "?", "uint32", None, "1")],
    "DropoutParameter": [("dropout_ratio", 1, "?", "float", None, "0.5")],
    "EltwiseParameter": [("operation", 1, "?", "enum", "EltwiseParameter.EltwiseOp", "SUM"),
                         ("coeff", 2, "*", "float")],
    "InnerProductParameter": [
        ("num_output", 1, "?", "uint32"), ("bias_term", 2, "?", "bool", None, "true"),
        ("axis", 5, "?", "int32", None, "1"), ("transpose", 6, "?", "bool", None, "false"),
    ],
    "InputParameter": [("shape", 1, "*", "message", "BlobShape")],
    "LRNParameter": [
        ("local_size", 1, "?", "uint32", None, "5"), ("alpha", 2, "?", "float", None, "1"),
        ("beta", 3, "?", "float", None, "0.75"),
        ("norm_region", 4, "?", "enum", "LRNParameter.NormRegion", "ACROSS_CHANNELS"),
        ("k", 5, "?", "float", None, "1"),
    ],
    "PoolingParameter": [
        ("pool", 1, "?", "enum", "PoolingParameter.PoolMethod", "MAX"),
        ("pad", 4, "?", "uint32", None, "0"), ("pad_h", 9, "?", "uint32", None, "0"),
        ("pad_w", 10, "?", "uint32", None, "0"), ("kernel_size", 2, "?", "uint32"),
        ("kernel_h", 5, "?", "uint32"), ("kernel_w", 6, "?", "uint32"),
        ("stride", 3, "?", "uint32", None, "1"), ("stride_h", 7, "?", "uint32"),
        ("stride_w", 8, "?", "uint32"), ("global_pooling", 12, "?", "bool", None, "false"),
        ("round_mode", 13, "?", "enum", "PoolingParameter.RoundMode", "CEIL"),
    ],
    "ReLUParameter": [("negative_slope", 1, "?", "float", None, "0")],
    "SoftmaxParameter": [("axis", 2, "?", "int32", None, "1")],
    "FlattenParameter": [("axis", 1, "?", "int32", None, "1"),
                         ("end_axis", 2, "?", "int32", None, "-1")],
    "V1LayerParameter": [
        ("bottom", 2, "*", "string"), ("top", 3, "*", "string"), ("name", 4, "?", "string"),
        ("include", 32, "*", "message", "NetStateRule"),
        ("exclude", 33, "*", "message", "NetStateRule"),
        ("type", 5, "?", "enum", "V1LayerParameter.LayerType"),
        ("blobs", 6, "*", "message", "BlobProto"),
        ("blobs_lr", 7, "*", "float"), ("weight_decay", 8, "*", "float"),
        ("concat_param", 9, "?", "message", "ConcatParameter"),
        ("convolution_param", 10, "?", "message", "ConvolutionParameter"),
        ("dropout_param", 12, "?", "message", "DropoutParameter"),
        ("eltwise_param", 24, "?", "message", "EltwiseParameter"),
        ("inner_product_param", 17, "?", "message", "InnerProductParameter"),
        ("lrn_param", 18, "?", "message", "LRNParameter"),
        ("pooling_param", 19, "?", "message", "PoolingParameter"),
        ("relu_param", 30, "?", "message", "ReLUParameter"),
        ("softmax_param", 39, "?", "message", "SoftmaxParameter"),
        ("transform_param", 36, "?", "message", "TransformationParameter"),
    ],
}

_ENUMS = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "EltwiseParameter.EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "LRNParameter.NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "PoolingParameter.PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "PoolingParameter.RoundMode": {"CEIL": 0, "FLOOR": 1},
    "V1LayerParameter.LayerType": {
        "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
        "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
        "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
        "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
        "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
        "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
        "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
        "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
        "THRESHOLD": 31,
    },
}

_classes = None


def _file_descriptor():
    from google.protobuf import descriptor_pb2

    F = descriptor_pb2.FieldDescriptorProto
    types = {"int64": F.TYPE_INT64, "int32": F.TYPE_INT32, "uint32": F.TYPE_UINT32,
             "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE, "string": F.TYPE_STRING,
             "bool": F.TYPE_BOOL, "message": F.TYPE_MESSAGE, "enum": F.TYPE_ENUM}
    fd = descriptor_pb2.FileDescriptorProto(name="minicnn_caffe.proto", package=PACKAGE,
                                            syntax="proto2")
    messages = {}
    for name, fields in _MESSAGES.items():
        msg = fd.message_type.add(name=name)
        messages[name] = msg
        for name_, number, label, kind, *rest in fields:
            type_name = rest[0] if rest else None
            f = msg.field.add(name=name_, number=number, type=types[kind],
                              label=F.LABEL_REPEATED if label.startswith("*") else F.LABEL_OPTIONAL)
            if label == "*p":
                f.options.packed = True
            if type_name:
                f.type_name = f".{PACKAGE}.{type_name}"
            if len(rest) > 1 and rest[1] is not None:
                f.default_value = rest[1]
    for name, values in _ENUMS.items():
        owner, _, short = name.rpartition(".")
        parent = messages[owner].enum_type if owner else fd.enum_type
        enum = parent.add(name=short)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)
    return fd


def messages():
    """The message classes by name: ``messages()["NetParameter"]`` and so on."""
    global _classes
    if _classes is None:
        try:
            from google.protobuf import descriptor_pool, message_factory
        except ImportError:
            raise InputError("Caffe import needs the protobuf package: "
                             "pip install -e \".[interop]\"") from None
        pool = descriptor_pool.DescriptorPool()
        pool.Add(_file_descriptor())
        _classes = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
                    for name in _MESSAGES}
    return _classes


def parse_prototxt(data, path):
    """A NetParameter from prototxt text (str, or the file's bytes); fields this schema does
    not declare are skipped. A file that is not text is refused before parsing."""
    net = messages()["NetParameter"]()  # first: it says how to install protobuf when it is missing
    from google.protobuf import text_format

    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not a Caffe prototxt: byte {e.start} is not UTF-8 text "
                             "(a binary file?)") from None
    control = next((i for i, c in enumerate(data) if (ord(c) < 32 and c not in "\t\n\r\f\v")
                    or ord(c) == 127), None)
    if control is not None:
        raise InputError(f"{path}: not a Caffe prototxt: character {control} is a control character "
                         "(a binary file?)")
    try:
        text_format.Parse(data, net, allow_unknown_field=True)
    except text_format.ParseError as e:
        reason = shown(e, limit=300, quote=False)
        raise InputError(f"{path}: not a readable Caffe prototxt ({reason})") from None
    return net


def parse_binary(data, kind, path):
    """A message of type ``kind`` ("NetParameter", "BlobProto") from its binary encoding."""
    msg = messages()[kind]()  # first: it says how to install protobuf when it is missing
    from google.protobuf.message import DecodeError

    if not data:
        raise InputError(f"{path}: empty file, not a Caffe {kind} file")
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        reason = shown(e, limit=300, quote=False)
        raise InputError(f"{path}: not a readable Caffe {kind} file ({reason})") from None
    return msg

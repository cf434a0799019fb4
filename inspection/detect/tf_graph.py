"""Reading a frozen TensorFlow graph (GraphDef) without TensorFlow.

A frozen graph is a serialized `tensorflow.GraphDef` protocol buffer. The protobuf runtime (already
installed with onnx/onnxruntime) parses it once it knows the schema; this module defines the part
of TensorFlow's schema a converter needs — GraphDef, NodeDef, AttrValue (+ ListValue), TensorProto,
TensorShapeProto — with TensorFlow's own field numbers (tensorflow/core/framework/*.proto), built
in Python with descriptor_pb2, so neither TensorFlow nor protoc is needed. Fields left out
(function library, debug info, resource handles, ...) are skipped by the parser as unknown fields.

`read_graph_def(path)` returns the parsed message; `TfGraph` indexes its nodes by name and turns
attributes and constant tensors into Python values and numpy arrays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "inspection.tf"

# tensorflow/core/framework/types.proto DataType -> numpy (the types a detection graph holds)
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),  # DT_FLOAT
    2: np.dtype(np.float64),  # DT_DOUBLE
    3: np.dtype(np.int32),  # DT_INT32
    4: np.dtype(np.uint8),  # DT_UINT8
    5: np.dtype(np.int16),  # DT_INT16
    6: np.dtype(np.int8),  # DT_INT8
    9: np.dtype(np.int64),  # DT_INT64
    10: np.dtype(np.bool_),  # DT_BOOL
    19: np.dtype(np.float16),  # DT_HALF
}
DT_STRING = 7


class GraphFormatError(ValueError):
    """The file is not a frozen TensorFlow graph, or holds something this reader does not handle."""


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str | None = None,
    oneof: int | None = None,
) -> None:
    f = message.field.add()
    f.name, f.number, f.type = name, number, kind
    f.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
    if type_name:
        f.type_name = f".{PACKAGE}.{type_name}"
    if oneof is not None:
        f.oneof_index = oneof


def _schema() -> descriptor_pb2.FileDescriptorProto:
    """TensorFlow's GraphDef schema, reduced to what a converter reads (field numbers as in TF)."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="inspection_tf_graph.proto", package=PACKAGE, syntax="proto3")

    dim = file.message_type.add(name="Dim")  # TensorShapeProto.Dim
    _field(dim, "size", 1, F.TYPE_INT64)
    _field(dim, "name", 2, F.TYPE_STRING)
    shape = file.message_type.add(name="TensorShapeProto")
    _field(shape, "dim", 2, F.TYPE_MESSAGE, repeated=True, type_name="Dim")
    _field(shape, "unknown_rank", 3, F.TYPE_BOOL)

    tensor = file.message_type.add(name="TensorProto")
    _field(tensor, "dtype", 1, F.TYPE_INT32)  # DataType enum, read as its number
    _field(tensor, "tensor_shape", 2, F.TYPE_MESSAGE, type_name="TensorShapeProto")
    _field(tensor, "version_number", 3, F.TYPE_INT32)
    _field(tensor, "tensor_content", 4, F.TYPE_BYTES)
    _field(tensor, "float_val", 5, F.TYPE_FLOAT, repeated=True)
    _field(tensor, "double_val", 6, F.TYPE_DOUBLE, repeated=True)
    _field(tensor, "int_val", 7, F.TYPE_INT32, repeated=True)
    _field(tensor, "string_val", 8, F.TYPE_BYTES, repeated=True)
    _field(tensor, "int64_val", 10, F.TYPE_INT64, repeated=True)
    _field(tensor, "bool_val", 11, F.TYPE_BOOL, repeated=True)
    _field(tensor, "half_val", 13, F.TYPE_INT32, repeated=True)

    name_attrs = file.message_type.add(name="NameAttrList")
    _field(name_attrs, "name", 1, F.TYPE_STRING)

    values = file.message_type.add(name="ListValue")  # AttrValue.ListValue
    _field(values, "s", 2, F.TYPE_BYTES, repeated=True)
    _field(values, "i", 3, F.TYPE_INT64, repeated=True)
    _field(values, "f", 4, F.TYPE_FLOAT, repeated=True)
    _field(values, "b", 5, F.TYPE_BOOL, repeated=True)
    _field(values, "type", 6, F.TYPE_INT32, repeated=True)
    _field(values, "shape", 7, F.TYPE_MESSAGE, repeated=True, type_name="TensorShapeProto")
    _field(values, "tensor", 8, F.TYPE_MESSAGE, repeated=True, type_name="TensorProto")

    attr = file.message_type.add(name="AttrValue")
    attr.oneof_decl.add(name="value")
    _field(attr, "list", 1, F.TYPE_MESSAGE, type_name="ListValue", oneof=0)
    _field(attr, "s", 2, F.TYPE_BYTES, oneof=0)
    _field(attr, "i", 3, F.TYPE_INT64, oneof=0)
    _field(attr, "f", 4, F.TYPE_FLOAT, oneof=0)
    _field(attr, "b", 5, F.TYPE_BOOL, oneof=0)
    _field(attr, "type", 6, F.TYPE_INT32, oneof=0)
    _field(attr, "shape", 7, F.TYPE_MESSAGE, type_name="TensorShapeProto", oneof=0)
    _field(attr, "tensor", 8, F.TYPE_MESSAGE, type_name="TensorProto", oneof=0)
    _field(attr, "placeholder", 9, F.TYPE_STRING, oneof=0)
    _field(attr, "func", 10, F.TYPE_MESSAGE, type_name="NameAttrList", oneof=0)

    node = file.message_type.add(name="NodeDef")
    entry = node.nested_type.add(name="AttrEntry")  # map<string, AttrValue> attr = 5
    entry.options.map_entry = True
    _field(entry, "key", 1, F.TYPE_STRING)
    _field(entry, "value", 2, F.TYPE_MESSAGE, type_name="AttrValue")
    _field(node, "name", 1, F.TYPE_STRING)
    _field(node, "op", 2, F.TYPE_STRING)
    _field(node, "input", 3, F.TYPE_STRING, repeated=True)
    _field(node, "device", 4, F.TYPE_STRING)
    _field(node, "attr", 5, F.TYPE_MESSAGE, repeated=True, type_name="NodeDef.AttrEntry")

    graph = file.message_type.add(name="GraphDef")
    _field(graph, "node", 1, F.TYPE_MESSAGE, repeated=True, type_name="NodeDef")
    return file


@functools.lru_cache(maxsize=1)
def graph_def_class() -> type:
    """The GraphDef message class of the schema above (its nested types: `.DESCRIPTOR`)."""
    pool = descriptor_pool.DescriptorPool()  # a private pool: never clashes with a real TensorFlow
    pool.Add(_schema())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.GraphDef"))


def read_graph_def(path: str | Path) -> Any:
    """Parse a frozen graph file into a GraphDef message (schema above)."""
    path = Path(path)
    data = path.read_bytes()
    message = graph_def_class()()
    try:
        message.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise GraphFormatError(f"{path} is not a TensorFlow GraphDef ({exc}); expected a frozen_inference_graph.pb") from exc
    if not len(message.node):
        raise GraphFormatError(f"{path} holds no graph nodes; expected a frozen_inference_graph.pb")
    return message


def tensor_to_array(tensor: Any) -> np.ndarray:
    """A TensorProto -> numpy array (tensor_content, or the typed *_val fields with TF's
    broadcast rule: a single value fills the whole shape)."""
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    if tensor.dtype == DT_STRING:
        return np.asarray(list(tensor.string_val), dtype=object).reshape(shape if tensor.string_val else (0,))
    dtype = TF_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise GraphFormatError(f"constant of TF DataType {tensor.dtype} is not supported (numeric and string types only)")
    count = int(np.prod(shape)) if shape else 1
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape).copy()
    if dtype == np.float16:
        values = np.asarray(tensor.half_val, np.uint16).view(np.float16)
    elif dtype in (np.float32,):
        values = np.asarray(tensor.float_val, dtype)
    elif dtype == np.float64:
        values = np.asarray(tensor.double_val, dtype)
    elif dtype == np.int64:
        values = np.asarray(tensor.int64_val, dtype)
    elif dtype == np.bool_:
        values = np.asarray(tensor.bool_val, dtype)
    else:
        values = np.asarray(tensor.int_val, dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1 or values.size == 0:
        return np.full(shape, values[0] if values.size else 0, dtype)
    # TF repeats the last value to fill the shape
    return np.concatenate([values, np.full(count - values.size, values[-1], dtype)]).reshape(shape)


def attr_value(value: Any) -> Any:
    """An AttrValue -> a plain Python value (bytes decoded, lists as lists, tensors as arrays)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "s":
        return value.s.decode("utf-8", "replace")
    if kind == "tensor":
        return tensor_to_array(value.tensor)
    if kind == "shape":
        return None if value.shape.unknown_rank else [int(d.size) for d in value.shape.dim]
    if kind == "list":
        lst = value.list
        for name in ("i", "f", "s", "b", "type"):
            items = list(getattr(lst, name))
            if items:
                return [x.decode() if isinstance(x, bytes) else x for x in items]
        return []
    if kind == "func":
        return value.func.name
    return getattr(value, kind)


@dataclass(frozen=True)
class TfNode:
    name: str
    op: str
    inputs: tuple[str, ...]  # tensor names "node:k"; control inputs ("^node") dropped
    attrs: dict[str, Any]


def tensor_name(ref: str) -> str:
    """A NodeDef input reference ("node", "node:1") as a full tensor name ("node:0", "node:1")."""
    return ref if ":" in ref else f"{ref}:0"


def node_of(tensor: str) -> str:
    return tensor.split(":")[0]


class TfGraph:
    """The nodes of a frozen graph by name, attributes as Python values."""

    def __init__(self, graph_def: Any) -> None:
        self.nodes: dict[str, TfNode] = {}
        for n in graph_def.node:
            self.nodes[n.name] = TfNode(
                n.name,
                n.op,
                tuple(tensor_name(i) for i in n.input if not i.startswith("^")),
                {key: attr_value(v) for key, v in n.attr.items()},
            )

    @classmethod
    def load(cls, path: str | Path) -> TfGraph:
        return cls(read_graph_def(path))

    def __getitem__(self, name: str) -> TfNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise GraphFormatError(f"the graph has no node {name!r}") from None

    def subgraph(self, inputs: list[str], outputs: list[str]) -> list[TfNode]:
        """Nodes needed to compute `outputs` from `inputs` (tensor names), in topological order.
        The walk stops at the input tensors' nodes (left out); constants reached are included."""
        stop = {node_of(t) for t in inputs}
        order: list[TfNode] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(node_of(t), False) for t in reversed(outputs)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                order.append(self[name])
                continue
            if name in seen:
                continue
            seen.add(name)
            if name in stop:  # the cut: its tensor becomes the graph input
                continue
            stack.append((name, True))
            for ref in reversed(self[name].inputs):
                if node_of(ref) not in seen:
                    stack.append((node_of(ref), False))
        return order

"""A frozen TensorFlow graph (cut between two tensors) -> an ONNX model, without TensorFlow.

Walks the nodes between the input tensor and the output tensors in topological order and maps
each TensorFlow operator to ONNX (`onnx.helper`), keeping TensorFlow's NHWC semantics at the
graph's edges:
- Everything computable from constants is folded in numpy (the unfolded batch-norm arithmetic:
  Add/Rsqrt/Mul/Sub on moving statistics, `Identity` reads of variables, ...).
- A convolution's per-channel scale and shift that follow it (batch norm written out as Mul + Add,
  FusedBatchNorm, BiasAdd) are folded into its weights and bias, so each conv block is one ONNX Conv.
- Convolutions run channels-first (ONNX's layout): the input is transposed once, and tensors go
  back to NHWC only where TensorFlow's semantics depend on it (Reshape, Shape, the outputs).
- The dynamic batch size travels symbolically through Shape -> StridedSlice -> Pack into the
  Reshape targets (ONNX Reshape's 0 = "keep this dimension").
An operator outside the supported set stops the conversion with its name and node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .onnx_graph import Dyn, OnnxGraph, PendingConv
from .tf_graph import GraphFormatError, TfGraph, TfNode, node_of

SUPPORTED_OPS = (
    "Const",
    "Identity",
    "StopGradient",
    "Snapshot",
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "RealDiv",
    "Rsqrt",
    "Sqrt",
    "Maximum",
    "Minimum",
    "BiasAdd",
    "Conv2D",
    "DepthwiseConv2dNative",
    "FusedBatchNorm",
    "FusedBatchNormV2",
    "FusedBatchNormV3",
    "Relu",
    "Relu6",
    "Sigmoid",
    "Shape",
    "StridedSlice",
    "Pack",
    "Reshape",
    "ConcatV2",
)


class _Batch:
    """The graph's dynamic batch size inside a symbolic shape (an object array element)."""

    def __repr__(self) -> str:
        return "N"


BATCH = _Batch()


Value = Any  # np.ndarray (constant or symbolic object array) | Dyn | PendingConv

ELEMENTWISE = {
    "Add": "Add",
    "AddV2": "Add",
    "BiasAdd": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "RealDiv": "Div",
    "Maximum": "Max",
    "Minimum": "Min",
}
NUMPY_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add,
    "AddV2": np.add,
    "BiasAdd": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "RealDiv": np.divide,
    "Maximum": np.maximum,
    "Minimum": np.minimum,
}


def _broadcast(a: Sequence[int | None], b: Sequence[int | None]) -> tuple[int | None, ...]:
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out: list[int | None] = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y or y is None:
            out.append(x)
        elif x is None:
            out.append(y)
        else:
            raise GraphFormatError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast")
    return tuple(out)


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding for one spatial axis: (begin, end), the odd pixel at the end."""
    out = math.ceil(size / stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def strided_slice(x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """TensorFlow StridedSlice on a numpy (or symbolic object) array; no ellipsis or new axes."""
    if attrs.get("ellipsis_mask", 0) or attrs.get("new_axis_mask", 0):
        raise GraphFormatError("StridedSlice with ellipsis_mask/new_axis_mask is not supported")
    index: list[Any] = []
    for axis, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist())):
        if attrs.get("shrink_axis_mask", 0) >> axis & 1:
            index.append(b)
            continue
        index.append(
            slice(None if attrs.get("begin_mask", 0) >> axis & 1 else b, None if attrs.get("end_mask", 0) >> axis & 1 else e, s)
        )
    return np.asarray(x[tuple(index)])


class TfToOnnx:
    """Converts the part of `graph` between `input_tensor` and `output_tensors` to an ONNX model."""

    def __init__(
        self, graph: TfGraph, input_tensor: str, input_shape: Sequence[int | None], output_tensors: Sequence[str], opset: int = 13
    ) -> None:
        self.graph = graph
        self.input_tensor = input_tensor
        self.input_shape = tuple(input_shape)
        self.output_tensors = list(output_tensors)
        self.opset = opset

    def _dyn(self, value: Value, node: TfNode) -> Dyn:
        if isinstance(value, PendingConv):
            return self.g.materialize(value)
        if isinstance(value, Dyn):
            return value
        raise GraphFormatError(f"node {node.name} ({node.op}) needs a runtime tensor input, got a constant")

    def convert(self, progress: Callable[[str], None] | None = None) -> Any:
        """The ONNX ModelProto (checked with onnx.checker)."""
        from onnx import TensorProto, helper

        self.g = OnnxGraph()
        self.values: dict[str, Value] = {}
        order = self.graph.subgraph([self.input_tensor], self.output_tensors)
        unsupported = sorted({f"{n.op} (e.g. node {n.name})" for n in order if n.op not in SUPPORTED_OPS})
        if unsupported:
            raise GraphFormatError(
                f"the graph between {self.input_tensor} and {', '.join(self.output_tensors)} uses operators "
                f"the converter does not map: {'; '.join(unsupported)}"
            )
        self.consumers: dict[str, int] = {}
        for n in order:
            for ref in n.inputs:
                self.consumers[ref] = self.consumers.get(ref, 0) + 1
        for t in self.output_tensors:
            self.consumers[t] = self.consumers.get(t, 0) + 1
        self.g.names.update([self.input_tensor, *self.output_tensors])  # graph I/O keep TensorFlow's tensor names
        self.values[self.input_tensor] = Dyn(self.input_tensor, self.input_shape)
        for k, node in enumerate(order):
            self._convert_node(node)
            if progress is not None and k % 200 == 0:
                progress(f"{k}/{len(order)} nodes")
        outputs = []
        for t in self.output_tensors:
            value = self.values.get(t)
            if value is None:
                raise GraphFormatError(f"output tensor {t} was not produced (does the node have that many outputs?)")
            dyn = self.g.layout(self._dyn(value, self.graph[node_of(t)]), nchw=False)
            self.g.nodes.append(helper.make_node("Identity", [dyn.name], [t], name=self.g.unique(f"{node_of(t)}/output")))
            outputs.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, ["N" if d is None else d for d in dyn.shape]))
        inputs = [
            helper.make_tensor_value_info(
                self.input_tensor, TensorProto.FLOAT, ["N" if d is None else d for d in self.input_shape]
            )
        ]
        return self.g.model(inputs, outputs, self.opset, "inspection.detect.tf_to_onnx")

    def _input(self, node: TfNode, k: int) -> Value:
        ref = node.inputs[k]
        if ref not in self.values:
            raise GraphFormatError(f"node {node.name} reads {ref}, which the converter has no value for")
        return self.values[ref]

    def _convert_node(self, node: TfNode) -> None:
        op, out = node.op, f"{node.name}:0"
        if op == "Const":
            self.values[out] = node.attrs["value"]
        elif op in ("Identity", "StopGradient", "Snapshot"):
            self.values[out] = self._input(node, 0)
        elif op in NUMPY_BINARY:
            self.values[out] = self._binary(node)
        elif op in ("Rsqrt", "Sqrt"):
            x = self._input(node, 0)
            if isinstance(x, np.ndarray):
                self.values[out] = (1.0 / np.sqrt(x) if op == "Rsqrt" else np.sqrt(x)).astype(x.dtype)
            else:
                d = self._dyn(x, node)
                root = self.g.emit("Sqrt", [d.name], f"{node.name}/sqrt:0" if op == "Rsqrt" else out)
                self.values[out] = replace(d, name=self.g.emit("Reciprocal", [root], out) if op == "Rsqrt" else root)
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            self.values[out] = self._conv(node)
        elif op.startswith("FusedBatchNorm"):
            self.values[out] = self._fused_batch_norm(node)
        elif op in ("Relu", "Relu6", "Sigmoid"):
            d = self._dyn(self._input(node, 0), node)
            if op == "Relu6":
                lo = self.g.const(f"{node.name}/min", np.array(0.0, np.float32))
                hi = self.g.const(f"{node.name}/max", np.array(6.0, np.float32))
                self.values[out] = replace(d, name=self.g.emit("Clip", [d.name, lo, hi], out))
            else:
                self.values[out] = replace(d, name=self.g.emit(op, [d.name], out))
        elif op == "Shape":
            self.values[out] = self._shape(node)
        elif op == "StridedSlice":
            x, begin, end, strides = (self._input(node, k) for k in range(4))
            if not all(isinstance(v, np.ndarray) for v in (x, begin, end, strides)):
                raise GraphFormatError(f"node {node.name}: StridedSlice is supported on shapes and constants only")
            self.values[out] = strided_slice(x, begin, end, strides, node.attrs)
        elif op == "Pack":
            parts = [self._input(node, k) for k in range(len(node.inputs))]
            if not all(isinstance(v, np.ndarray) for v in parts):
                raise GraphFormatError(f"node {node.name}: Pack is supported on shapes and constants only")
            symbolic = any(v.dtype == object for v in parts)
            self.values[out] = np.stack([v.astype(object) if symbolic else v for v in parts], axis=int(node.attrs.get("axis", 0)))
        elif op == "Reshape":
            self.values[out] = self._reshape(node)
        elif op == "ConcatV2":
            self.values[out] = self._concat(node)
        else:  # pragma: no cover - SUPPORTED_OPS and this dispatch agree
            raise GraphFormatError(f"operator {op} (node {node.name}) is not supported")

    def _binary(self, node: TfNode) -> Value:
        a, b = self._input(node, 0), self._input(node, 1)
        op, out = node.op, f"{node.name}:0"
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            if a.dtype == object or b.dtype == object:
                raise GraphFormatError(f"node {node.name}: arithmetic on a symbolic shape is not supported")
            return NUMPY_BINARY[op](a, b).astype(np.result_type(a, b))
        # x / 1 and x * 1 (TF's logit scale of 1.0) are no-ops
        if op in ("RealDiv", "Mul") and isinstance(b, np.ndarray) and b.size and np.all(b == 1):
            return a
        if isinstance(a, PendingConv) and isinstance(b, np.ndarray) and self.consumers.get(node.inputs[0]) == 1:
            folded = a.fold(op, b)
            if folded is not None:
                return folded
        if (
            op in ("Mul", "Add", "AddV2")
            and isinstance(b, PendingConv)
            and isinstance(a, np.ndarray)
            and self.consumers.get(node.inputs[1]) == 1
        ):
            folded = b.fold(op, a)
            if folded is not None:
                return folded
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            dyn = self._dyn(b if isinstance(a, np.ndarray) else a, node)
            const = self.g.const_for(a if isinstance(a, np.ndarray) else b, dyn, f"{node.name}/const")
            inputs = [const, dyn.name] if isinstance(a, np.ndarray) else [dyn.name, const]
            shape = _broadcast(dyn.shape, np.shape(a if isinstance(a, np.ndarray) else b))
            return Dyn(self.g.emit(ELEMENTWISE[op], inputs, out), shape, dyn.nchw)
        da, db = self._dyn(a, node), self._dyn(b, node)
        if da.nchw != db.nchw:  # mixed layouts: meet in channels-first (the convolutions' layout)
            da, db = self.g.layout(da, True), self.g.layout(db, True)
        return Dyn(self.g.emit(ELEMENTWISE[op], [da.name, db.name], out), _broadcast(da.shape, db.shape), da.nchw and db.nchw)

    def _conv(self, node: TfNode) -> PendingConv:
        x = self._dyn(self._input(node, 0), node)
        w = self._input(node, 1)
        if not isinstance(w, np.ndarray):
            raise GraphFormatError(f"node {node.name}: convolution weights must be constant (a frozen graph)")
        if node.attrs.get("data_format", "NHWC") != "NHWC":
            raise GraphFormatError(f"node {node.name}: data_format {node.attrs['data_format']} is not supported (NHWC only)")
        if len(x.shape) != 4 or x.shape[1] is None or x.shape[2] is None:
            raise GraphFormatError(f"node {node.name}: input shape {x.shape} needs static height and width")
        x = self.g.layout(x, nchw=True)
        _, h, wd, _ = x.shape
        strides = list(node.attrs.get("strides", [1, 1, 1, 1]))[1:3]
        dilations = list(node.attrs.get("dilations", [1, 1, 1, 1]))[1:3]
        kh, kw = int(w.shape[0]), int(w.shape[1])
        w64 = w.astype(np.float64)
        if node.op == "Conv2D":  # HWIO -> OIHW
            weight, group, cout = w64.transpose(3, 2, 0, 1), 1, int(w.shape[3])
        else:  # depthwise HW(C)(M) -> (C·M) 1 H W, output channel c·M + m as TensorFlow orders it
            cout = int(w.shape[2] * w.shape[3])
            weight, group = w64.reshape(kh, kw, cout).transpose(2, 0, 1)[:, None], int(w.shape[2])
        padding = node.attrs.get("padding", "VALID")
        if padding == "SAME":
            (pt, pb), (pl, pr) = (_same_pads(h, kh, strides[0], dilations[0]), _same_pads(wd, kw, strides[1], dilations[1]))
            oh, ow = math.ceil(h / strides[0]), math.ceil(wd / strides[1])
        elif padding == "VALID":
            pt = pb = pl = pr = 0
            oh = (h - (kh - 1) * dilations[0] - 1) // strides[0] + 1
            ow = (wd - (kw - 1) * dilations[1] - 1) // strides[1] + 1
        else:
            raise GraphFormatError(f"node {node.name}: padding {padding} is not supported (SAME, VALID)")
        attrs = {"kernel_shape": [kh, kw], "strides": strides, "dilations": dilations, "pads": [pt, pl, pb, pr], "group": group}
        return PendingConv(node.name, x.name, weight, np.zeros(cout), attrs, (x.shape[0], oh, ow, cout))

    def _fused_batch_norm(self, node: TfNode) -> Value:
        x = self._input(node, 0)
        scale, offset, mean, var = (self._input(node, k) for k in range(1, 5))
        if node.attrs.get("is_training", False):
            raise GraphFormatError(
                f"node {node.name}: FusedBatchNorm in training mode cannot be frozen; export the inference graph"
            )
        if not all(isinstance(v, np.ndarray) for v in (scale, offset, mean, var)):
            raise GraphFormatError(f"node {node.name}: batch-norm statistics must be constant")
        a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(node.attrs.get("epsilon", 1e-3)))
        b = offset.astype(np.float64) - mean.astype(np.float64) * a
        if isinstance(x, PendingConv) and self.consumers.get(node.inputs[0]) == 1:
            scaled = x.fold("Mul", a)
            if scaled is not None:
                return scaled.fold("Add", b)
        d = self._dyn(x, node)
        scaled = self.g.emit(
            "Mul", [d.name, self.g.const_for(a.astype(np.float32), d, f"{node.name}/scale")], f"{node.name}/scaled:0"
        )
        return replace(
            d,
            name=self.g.emit("Add", [scaled, self.g.const_for(b.astype(np.float32), d, f"{node.name}/shift")], f"{node.name}:0"),
        )

    def _shape(self, node: TfNode) -> np.ndarray:
        x = self._input(node, 0)
        if isinstance(x, np.ndarray):
            return np.asarray(x.shape, np.int32)
        shape = x.shape
        dtype = np.int64 if node.attrs.get("out_type") == 9 else np.int32
        if any(d is None for d in shape[1:]):
            raise GraphFormatError(f"node {node.name}: Shape of {shape} (only the batch may be dynamic)")
        if shape[0] is None:
            return np.asarray([BATCH, *shape[1:]], dtype=object)
        return np.asarray(shape, dtype)

    def _reshape(self, node: TfNode) -> Dyn:
        x = self.g.layout(self._dyn(self._input(node, 0), node), nchw=False)  # TF reshapes in NHWC order
        target = self._input(node, 1)
        if not isinstance(target, np.ndarray):
            raise GraphFormatError(f"node {node.name}: Reshape to a shape computed at run time is not supported")
        dims: list[int | None] = []
        onnx_dims: list[int] = []
        for k, d in enumerate(target.reshape(-1).tolist()):
            if d is BATCH:
                if k != 0 or x.shape[0] is not None:
                    raise GraphFormatError(f"node {node.name}: the batch size may only stay in the first dimension")
                dims.append(None)
                onnx_dims.append(0)
            else:
                dims.append(int(d))
                onnx_dims.append(int(d))
        if -1 in dims:  # resolve it statically where the element count is known
            k = dims.index(-1)
            others = [d for i, d in enumerate(dims) if i != k]
            if None not in x.shape:
                dims[k] = int(np.prod(x.shape)) // int(np.prod(others))
            elif x.shape[0] is None and None not in x.shape[1:] and dims[0] is None and k != 0:
                dims[k] = int(np.prod(x.shape[1:])) // int(np.prod(others[1:]))
            else:
                dims[k] = None
        shape_name = self.g.const(f"{node.name}/shape", np.asarray(onnx_dims, np.int64))
        return Dyn(self.g.emit("Reshape", [x.name, shape_name], f"{node.name}:0"), tuple(dims), False)

    def _concat(self, node: TfNode) -> Dyn:
        axis = self._input(node, len(node.inputs) - 1)
        if not isinstance(axis, np.ndarray):
            raise GraphFormatError(f"node {node.name}: ConcatV2 axis must be constant")
        parts = [self._input(node, k) for k in range(len(node.inputs) - 1)]
        dyns = [self._dyn(p, node) for p in parts if not isinstance(p, np.ndarray)]
        rank = len(dyns[0].shape)
        ax = int(axis) % rank
        nchw = rank == 4 and all(d.nchw for d in dyns)
        names, shapes = [], []
        for p in parts:
            if isinstance(p, np.ndarray):
                names.append(self.g.const_for(p, Dyn("", (None,) * rank, nchw), f"{node.name}/const"))
                shapes.append(p.shape)
            else:
                d = self.g.layout(self._dyn(p, node), nchw)
                names.append(d.name)
                shapes.append(d.shape)
        onnx_axis = [0, 2, 3, 1][ax] if nchw else ax
        shape = list(shapes[0])
        sizes = [s[ax] for s in shapes]
        shape[ax] = None if any(s is None for s in sizes) else int(sum(sizes))
        return Dyn(self.g.emit("Concat", names, f"{node.name}:0", axis=onnx_axis), tuple(shape), nchw)

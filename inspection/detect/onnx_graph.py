"""The ONNX graph a conversion builds (`tf_to_onnx`): runtime tensors (`Dyn`), convolutions not emitted yet
(`PendingConv`, so a following scale and shift fold into their weights) and `OnnxGraph`, which gives every
node and tensor a unique name, holds the constants, emits each layout transpose once and makes the model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Dyn:
    """A runtime tensor of the ONNX graph. `shape` in TensorFlow's (NHWC) terms, None = batch;
    `nchw`: a 4-D tensor the ONNX graph holds channels-first."""

    name: str
    shape: tuple[int | None, ...]
    nchw: bool = False


@dataclass(frozen=True)
class PendingConv:
    """A convolution not emitted yet, so a following per-channel scale/shift folds into it."""

    node: str
    x: str  # ONNX name of the NCHW input
    weight: np.ndarray  # float64 (O, I/group, kH, kW)
    bias: np.ndarray  # float64 (O,)
    attrs: dict[str, Any]
    shape: tuple[int | None, ...]  # NHWC output shape

    def fold(self, op: str, c: np.ndarray) -> PendingConv | None:
        """self * c, self + c, self - c (c per output channel or scalar) as a new conv; None if c is not."""
        channels = self.weight.shape[0]
        if c.size not in (1, channels) or (c.size == channels and c.ndim and c.shape[-1] != channels):
            return None
        c = np.asarray(c, np.float64).reshape(-1)
        if op == "Mul":
            return replace(self, weight=self.weight * c.reshape(-1, 1, 1, 1), bias=self.bias * c)
        if op == "RealDiv":
            return replace(self, weight=self.weight / c.reshape(-1, 1, 1, 1), bias=self.bias / c)
        if op in ("Add", "AddV2", "BiasAdd"):
            return replace(self, bias=self.bias + c)
        if op == "Sub":
            return replace(self, bias=self.bias - c)
        return None


class OnnxGraph:
    """The nodes and initializers of one ONNX graph being built."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()  # taken: every node and tensor name is unique
        self._layout_cache: dict[tuple[str, bool], Dyn] = {}
        self._materialized: dict[int, Dyn] = {}

    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def const(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def emit(self, op: str, inputs: list[str], output_hint: str, node_hint: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = self.unique(output_hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.unique(node_hint or out.split(":")[0]), **attrs))
        return out

    def materialize(self, conv: PendingConv) -> Dyn:
        key = id(conv)
        if key not in self._materialized:
            w = self.const(f"{conv.node}/weight", conv.weight.astype(np.float32))
            b = self.const(f"{conv.node}/bias", conv.bias.astype(np.float32))
            out = self.emit("Conv", [conv.x, w, b], f"{conv.node}:0", conv.node, **conv.attrs)
            self._materialized[key] = Dyn(out, conv.shape, nchw=True)
        return self._materialized[key]

    def layout(self, dyn: Dyn, nchw: bool) -> Dyn:
        """The tensor in the requested layout (4-D only; a transpose is emitted once per tensor)."""
        if dyn.nchw == nchw or len(dyn.shape) != 4:
            return dyn
        key = (dyn.name, nchw)
        if key not in self._layout_cache:
            perm = [0, 3, 1, 2] if nchw else [0, 2, 3, 1]
            out = self.emit("Transpose", [dyn.name], dyn.name.split(":")[0] + ("__nchw" if nchw else "__nhwc"), perm=perm)
            self._layout_cache[key] = Dyn(out, dyn.shape, nchw)
        return self._layout_cache[key]

    def const_for(self, array: np.ndarray, like: Dyn, hint: str) -> str:
        """A constant operand of an elementwise op with `like`, in `like`'s layout."""
        array = np.asarray(array)
        if like.nchw and array.ndim >= 1 and array.size > 1:
            array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(0, 3, 1, 2)
        return self.const(hint, array.astype(np.float32) if array.dtype == np.float64 else array)

    def model(self, inputs: list[Any], outputs: list[Any], opset: int, producer: str) -> Any:
        """The ONNX ModelProto of the nodes emitted (checked with onnx.checker)."""
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, "tf_frozen_graph", inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
        model.ir_version = min(model.ir_version, 8)  # readable by older runtimes (onnxruntime >= 1.14, TensorRT 8.6+)
        onnx.checker.check_model(model)
        return model

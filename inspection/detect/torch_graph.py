"""An ONNX graph as a native torch `nn.Module`: the same weights as every other backend.

The graph is read with `onnx`, constant sub-graphs are folded once at load time, and each remaining
node becomes one torch call, so the module runs eagerly on CPU, in fp16/bf16 and channels-last on
CUDA, under CUDA-graph capture and under `torch.compile(fullgraph=True)`. Two rewrites keep the GPU
memory traffic down:

- Conv -> Mul(per-channel constant) -> Add(per-channel constant), which is how TF's converter leaves
  folded batch norms behind depthwise convolutions, becomes one Conv with scaled weights and a bias;
- Mul(x, Sigmoid(x)) becomes SiLU.

Values derived from `Shape` (the dynamic batch dimension, reshape targets) are Python ints and
tuples of ints, computed from `x.shape` on every call; everything else is a tensor on the module's
device in its compute dtype. So `forward` never reads a tensor back to the host: no device->host
sync, nothing a CUDA-graph capture cannot record, nothing that breaks a compiler's trace.

Only the operators the registered models use are implemented (`OPS`: SSD-MobileNet-V2 uses 12
operator types, YOLOX-Nano 10), each tested against onnxruntime; any other one raises
NotImplementedError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:
    import onnx
    from onnx import helper, numpy_helper
except ImportError as exc:  # pragma: no cover - the torch extra installs onnx
    raise ImportError("backend torch reads the ONNX graph with the onnx package: pip install 'inspection[torch]'") from exc

INT64_MAX = np.iinfo(np.int64).max

# ONNX TensorProto element types -> torch dtypes (floats map to the module's compute dtype at run time).
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
_INT_TYPES = {
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}

# A shape value: a 1-D int64 ONNX tensor as a tuple of ints, a 0-D one as an int.
ShapeValue = Union[int, tuple[int, ...]]


@dataclass
class _Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str = ""


@dataclass
class _Step:
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    free: tuple[str, ...] = field(default=())


def _attrs(node: Any) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _const_tensor(array: np.ndarray) -> torch.Tensor:
    """Constants are folded in float32 / int64 on the host; the compute dtype is applied later."""
    if array.dtype.kind == "f":
        return torch.from_numpy(np.array(array, np.float32))
    if array.dtype == np.bool_:
        return torch.from_numpy(np.array(array))
    return torch.from_numpy(np.array(array, np.int64))


def _ints(t: torch.Tensor | Sequence[int]) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _shape_value(t: torch.Tensor) -> ShapeValue:
    """An int64 constant as a shape value (load time only)."""
    if t.is_floating_point() or t.dim() > 1:
        raise NotImplementedError(f"shape arithmetic on a {t.dim()}-D {t.dtype} constant is not supported")
    return int(t) if t.dim() == 0 else tuple(_ints(t))


# ---------------------------------------------------------------------------------------------
# Operators on data tensors. Each builder takes the node and a `_Context` and returns (fn, names
# of fn's inputs); attributes and constant shape/axis inputs are read once here, not on every call.
# The same functions fold constant sub-graphs at load time (on host tensors).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    constants: dict[str, torch.Tensor]
    dtype: torch.dtype
    inplace_ok: frozenset[str] = frozenset()  # values with one consumer, safe to overwrite

    def const(self, name: str) -> torch.Tensor | None:
        return self.constants.get(name)


Builder = Callable[[_Node, _Context], tuple[Callable[..., Any], list[str]]]


def _conv(node: _Node, ctx: _Context) -> tuple[Callable[..., Any], list[str]]:
    a = node.attrs
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise NotImplementedError(f"Conv {node.name}: auto_pad={a['auto_pad']} is not supported by the torch graph interpreter")
    weight = ctx.const(node.inputs[1])
    if weight is None or weight.dim() != 4:
        raise NotImplementedError(f"Conv {node.name}: only 2-D convolutions with constant weights are supported")
    strides = tuple(a.get("strides", [1, 1]))
    dilations = tuple(a.get("dilations", [1, 1]))
    groups = int(a.get("group", 1))
    top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
    symmetric = top == bottom and left == right
    padding = (top, left) if symmetric else (0, 0)
    # TF "SAME" padding of stride-2 layers pads only bottom/right: an explicit pad keeps the sampling grid.
    extra = None if symmetric else (left, right, top, bottom)

    def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if extra is not None:
            x = F.pad(x, extra)
        return F.conv2d(x, w, b, strides, padding, dilations, groups)

    return conv, [i for i in node.inputs if i]


def _clip(node: _Node, ctx: _Context):
    lo = hi = None
    if len(node.inputs) > 1 and node.inputs[1]:
        lo = float(ctx.const(node.inputs[1]))
    if len(node.inputs) > 2 and node.inputs[2]:
        hi = float(ctx.const(node.inputs[2]))
    lo = node.attrs.get("min", lo)
    hi = node.attrs.get("max", hi)
    inplace = node.inputs[0] in ctx.inplace_ok
    if lo == 0.0 and hi == 6.0:
        return (lambda x: F.hardtanh(x, 0.0, 6.0, inplace=inplace)), [node.inputs[0]]
    return (lambda x: torch.clamp(x, lo, hi)), [node.inputs[0]]


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Builder:
    def build(node: _Node, ctx: _Context):
        return fn, list(node.inputs)

    return build


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Builder:
    def build(node: _Node, ctx: _Context):
        return fn, [node.inputs[0]]

    return build


def _transpose(node: _Node, ctx: _Context):
    perm = node.attrs.get("perm")

    def transpose(x: torch.Tensor) -> torch.Tensor:
        return x.permute(*(perm if perm is not None else reversed(range(x.dim()))))

    return transpose, [node.inputs[0]]


def _reshape_target(x: torch.Tensor, shape: Sequence[int], allowzero: bool) -> list[int]:
    return list(shape) if allowzero else [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]


def _reshape(node: _Node, ctx: _Context):
    allowzero = bool(node.attrs.get("allowzero", 0))
    fixed = ctx.const(node.inputs[1])
    if fixed is not None:
        shape = _ints(fixed)
        return (lambda x: x.reshape(_reshape_target(x, shape, allowzero))), [node.inputs[0]]
    # The target is a shape value (a tuple computed from x.shape), never a tensor read back.
    return (lambda x, s: x.reshape(_reshape_target(x, s, allowzero))), [node.inputs[0], node.inputs[1]]


def _concat(node: _Node, ctx: _Context):
    axis = int(node.attrs["axis"])
    return (lambda *xs: torch.cat(xs, dim=axis)), list(node.inputs)


def _gather(node: _Node, ctx: _Context):
    axis = int(node.attrs.get("axis", 0))

    def gather(data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ax = axis % data.dim()
        idx = index.to(device=data.device, dtype=torch.int64)
        idx = torch.where(idx < 0, idx + data.shape[ax], idx)
        out = data.index_select(ax, idx.reshape(-1))
        return out.reshape(data.shape[:ax] + idx.shape + data.shape[ax + 1 :])

    return gather, list(node.inputs)


def _cast(node: _Node, ctx: _Context):
    to = int(node.attrs["to"])
    if to in _FLOAT_TYPES:
        # Data tensors keep the module's compute dtype (an fp16 graph casts to fp32 at its ends).
        dtype = ctx.dtype
        return (lambda x: x.to(dtype)), [node.inputs[0]]
    if to not in _INT_TYPES:
        raise NotImplementedError(f"Cast {node.name} to ONNX type {to} is not supported by the torch graph interpreter")
    dtype = _INT_TYPES[to]
    return (lambda x: x.to(dtype)), [node.inputs[0]]


def _slice_params(node: _Node, ctx: _Context) -> list[tuple[int, int, int, int]]:
    """(start, end, axis, step) per sliced axis, from constant inputs."""
    names = list(node.inputs) + [""] * (5 - len(node.inputs))
    static = [ctx.const(n) if n else None for n in names[1:]]
    if any(n and s is None for n, s in zip(names[1:], static)):
        raise NotImplementedError(f"Slice {node.name}: starts/ends/axes/steps must be constants")
    starts, ends = _ints(static[0]), _ints(static[1])
    axes = _ints(static[2]) if static[2] is not None else list(range(len(starts)))
    steps = _ints(static[3]) if static[3] is not None else [1] * len(starts)
    if any(s <= 0 for s in steps):
        raise NotImplementedError(f"Slice {node.name}: only positive steps are supported")
    return list(zip(starts, ends, axes, steps))


def _python_slice(start: int, end: int, step: int, size: int) -> slice:
    return slice(start, min(end, size) if end < INT64_MAX else size, step)


def _slice(node: _Node, ctx: _Context):
    params = _slice_params(node, ctx)

    def slice_(x: torch.Tensor) -> torch.Tensor:
        index: list[Any] = [slice(None)] * x.dim()
        for start, end, axis, step in params:
            index[axis] = _python_slice(start, end, step, x.shape[axis])
        return x[tuple(index)]

    return slice_, [node.inputs[0]]


def _maxpool(node: _Node, ctx: _Context):
    a = node.attrs
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", [1] * len(kernel)))
    dilations = tuple(a.get("dilations", [1] * len(kernel)))
    top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
    ceil = bool(a.get("ceil_mode", 0))
    if top != bottom or left != right:
        raise NotImplementedError(f"MaxPool {node.name}: asymmetric pads are not supported")
    return (lambda x: F.max_pool2d(x, kernel, strides, (top, left), dilations, ceil_mode=ceil)), [node.inputs[0]]


def _resize(node: _Node, ctx: _Context):
    a = node.attrs
    mode = a.get("mode", "nearest")
    transform = a.get("coordinate_transformation_mode", "half_pixel")
    scales = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sizes = ctx.const(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
    if scales is not None and scales.numel() == 0:
        scales = None
    if scales is None and sizes is None:
        raise NotImplementedError(f"Resize {node.name}: needs constant scales or sizes")
    if mode == "nearest" and transform == "asymmetric" and a.get("nearest_mode", "round_prefer_floor") == "floor":
        torch_mode, align = "nearest", None
    elif mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel"):
        torch_mode, align = "bilinear", False
    elif mode == "linear" and transform == "align_corners":
        torch_mode, align = "bilinear", True
    else:
        raise NotImplementedError(f"Resize {node.name}: mode={mode} coordinate_transformation_mode={transform} is not supported")
    scale = None if scales is None else tuple(float(s) for s in scales.tolist()[2:])
    size = None if sizes is None else tuple(_ints(sizes)[2:])

    def resize(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size, scale_factor=None if size else scale, mode=torch_mode, align_corners=align)

    return resize, [node.inputs[0]]


def _silu(node: _Node, ctx: _Context):
    return F.silu, [node.inputs[0]]


# The operators of the registered models (ssd_mobilenet_v2_coco: Add Cast Clip Concat Conv Gather
# Mul Reshape Shape Sigmoid Slice Transpose; yolox_nano: Add Concat Conv MaxPool Mul Reshape Resize
# Sigmoid Slice Transpose), each with a test against onnxruntime in tests/gpu/test_torch_graph_ops.py.
# `Shape` only makes shape values (see SHAPE_OPS).
OPS: dict[str, Builder] = {
    "Add": _binary(torch.add),
    "Cast": _cast,
    "Clip": _clip,
    "Concat": _concat,
    "Conv": _conv,
    "Gather": _gather,
    "MaxPool": _maxpool,
    "Mul": _binary(torch.mul),
    "Reshape": _reshape,
    "Resize": _resize,
    "Sigmoid": _unary(torch.sigmoid),
    "Slice": _slice,
    "Transpose": _transpose,
    "SiLU": _silu,  # produced by our own rewrite, not an ONNX operator
}

_FRESH_OUTPUT_OPS = frozenset({"Conv", "Add", "Mul", "Concat", "MaxPool", "Resize", "SiLU"})


# ---------------------------------------------------------------------------------------------
# Shape arithmetic on Python ints: `Shape` of a data tensor and what the graph computes from it.
# Constant inputs are bound at load time; the builders return (fn, names of runtime inputs).
# ---------------------------------------------------------------------------------------------


def _shape_of(node: _Node, ctx: _Context):
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end")
    return (lambda x: tuple(x.shape[start:end])), [node.inputs[0]]


def _bind(node: _Node, ctx: _Context) -> tuple[list[str], list[ShapeValue | None]]:
    """Runtime input names, and per input its constant shape value (None for a runtime input)."""
    bound = [_shape_value(ctx.constants[n]) if n in ctx.constants else None for n in node.inputs]
    return [n for n, b in zip(node.inputs, bound) if b is None], bound


def _shape_gather(node: _Node, ctx: _Context):
    if int(node.attrs.get("axis", 0)) != 0 or node.inputs[1] not in ctx.constants:
        raise NotImplementedError(f"Gather {node.name} on a shape: only a constant index on axis 0 is supported")
    index = _shape_value(ctx.constants[node.inputs[1]])
    if isinstance(index, int):
        return (lambda s: s[index]), [node.inputs[0]]
    return (lambda s: tuple(s[i] for i in index)), [node.inputs[0]]


def _shape_cast(node: _Node, ctx: _Context):
    if int(node.attrs["to"]) not in _INT_TYPES:
        raise NotImplementedError(f"Cast {node.name} of a shape to ONNX type {node.attrs['to']} is not supported")
    return (lambda s: s), [node.inputs[0]]


def _shape_slice(node: _Node, ctx: _Context):
    params = _slice_params(node, ctx)
    if [axis for _, _, axis, _ in params] not in ([0], [-1]):
        raise NotImplementedError(f"Slice {node.name} on a shape: only axis 0 is supported")
    start, end, _, step = params[0]
    return (lambda s: s[_python_slice(start, end, step, len(s))]), [node.inputs[0]]


def _shape_concat(node: _Node, ctx: _Context):
    runtime, bound = _bind(node, ctx)

    def concat(*values: ShapeValue) -> tuple[int, ...]:
        it = iter(values)
        parts = [next(it) if b is None else b for b in bound]
        return tuple(v for p in parts for v in ((p,) if isinstance(p, int) else p))

    return concat, runtime


SHAPE_OPS: dict[str, Builder] = {
    "Shape": _shape_of,
    "Gather": _shape_gather,
    "Cast": _shape_cast,
    "Slice": _shape_slice,
    "Concat": _shape_concat,
}

# ---------------------------------------------------------------------------------------------


def _channel_vector(value: torch.Tensor, channels: int) -> torch.Tensor | None:
    """A constant that broadcasts over an (N, C, H, W) tensor per channel, as a (C,) vector; else None."""
    if value.dim() > 4 or not value.is_floating_point():
        return None
    shape = [1] * (4 - value.dim()) + list(value.shape)
    if shape[0] != 1 or shape[2] != 1 or shape[3] != 1 or shape[1] not in (1, channels):
        return None
    return value.reshape(-1).expand(channels).clone()


def _unsupported(node: _Node, where: str, supported: dict[str, Builder]) -> NotImplementedError:
    return NotImplementedError(
        f"ONNX operator {node.op} (node {node.name}) {where}is not supported by the torch backend's graph interpreter, "
        f"which implements the operators of the registered models: {', '.join(sorted(k for k in supported if k != 'SiLU'))}; "
        "run this model with model.backend=onnxruntime (or tensorrt)"
    )


class OnnxGraphModule(nn.Module):
    """Runs an ONNX graph with torch ops. Inputs/outputs follow the graph's own names and layouts.

    `forward(*inputs)` returns the graph outputs as a tuple in `output_names` order, in the
    module's compute dtype (`dtype`); constants are buffers, so `.to(device)` moves them.
    """

    def __init__(self, model: onnx.ModelProto | str | Path, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        graph = proto.graph
        self.dtype = dtype
        consts: dict[str, torch.Tensor] = {i.name: _const_tensor(numpy_helper.to_array(i)) for i in graph.initializer}
        nodes: list[_Node] = []
        for n in graph.node:
            if n.op_type == "Constant":
                consts[n.output[0]] = _const_tensor(numpy_helper.to_array(_attrs_raw(n)["value"]))
                continue
            nodes.append(_Node(n.op_type, list(n.input), list(n.output), _attrs(n), n.name or n.output[0]))
        self.input_names = [i.name for i in graph.input if i.name not in consts]
        self.output_names = [o.name for o in graph.output]
        for node in nodes:
            if node.op not in OPS and node.op not in SHAPE_OPS:
                raise _unsupported(node, "", OPS)

        nodes = self._fold_constants(nodes, consts)
        nodes = _fuse_conv_affine(nodes, consts, set(self.output_names))
        nodes = _fuse_silu(nodes, set(self.output_names))
        self._steps = self._build(nodes, consts)

    # -- load-time passes --------------------------------------------------------------------

    def _fold_constants(self, nodes: list[_Node], consts: dict[str, torch.Tensor]) -> list[_Node]:
        """Evaluate every node whose inputs are all constants; classify the rest as data or shape values."""
        self._kinds: dict[str, str] = {name: "data" for name in self.input_names}
        remaining = []
        for node in nodes:
            live = [i for i in node.inputs if i]
            if all(i in consts for i in live) and node.op == "Shape":
                start, end = node.attrs.get("start", 0), node.attrs.get("end")
                consts[node.outputs[0]] = torch.tensor(consts[live[0]].shape[start:end], dtype=torch.int64)
                continue
            if all(i in consts for i in live):
                if node.op not in OPS:
                    raise _unsupported(node, "on constants ", OPS)
                fn, args = OPS[node.op](node, _Context(consts, torch.float32))
                out = fn(*[consts[a] for a in args])
                for name, value in zip(node.outputs, out if isinstance(out, tuple) else (out,)):
                    consts[name] = value if value.is_floating_point() or value.dtype == torch.bool else value.to(torch.int64)
                continue
            runtime = [i for i in live if i not in consts]
            kind = "shape" if node.op == "Shape" or all(self._kinds.get(i) == "shape" for i in runtime) else "data"
            for name in node.outputs:
                self._kinds[name] = kind
            remaining.append(node)
        for node in remaining:
            if self._kinds[node.outputs[0]] == "shape" and node.op not in SHAPE_OPS:
                raise _unsupported(node, "on a shape ", SHAPE_OPS)
            if self._kinds[node.outputs[0]] == "data" and node.op not in OPS:
                raise _unsupported(node, "", OPS)
            shape_inputs = [i for i in node.inputs if self._kinds.get(i) == "shape"]
            if (
                self._kinds[node.outputs[0]] == "data"
                and shape_inputs
                and not (node.op == "Reshape" and shape_inputs == node.inputs[1:2])
            ):
                raise NotImplementedError(f"{node.op} {node.name}: a shape-derived input is supported only as a Reshape target")
        return remaining

    def _build(self, nodes: list[_Node], consts: dict[str, torch.Tensor]) -> list[_Step]:
        consumers: dict[str, int] = {}
        for node in nodes:
            for i in node.inputs:
                if i:
                    consumers[i] = consumers.get(i, 0) + 1
        # In-place activations only on fresh tensors read once: a view (Reshape, Slice, ...) shares storage.
        fresh = {o for node in nodes if node.op in _FRESH_OUTPUT_OPS for o in node.outputs}
        inplace_ok = frozenset(n for n, count in consumers.items() if count == 1 and n in fresh and n not in self.output_names)
        self._const_attr: dict[str, str] = {}
        steps: list[_Step] = []
        for node in nodes:
            ctx = _Context(consts, self.dtype, inplace_ok)
            if self._kinds[node.outputs[0]] == "shape":
                fn, args = SHAPE_OPS[node.op](node, ctx)  # constant inputs are bound inside fn
            else:
                fn, args = OPS[node.op](node, ctx)
                for a in args:
                    if a in consts and a not in self._const_attr:
                        self._register_const(a, consts[a])
            steps.append(_Step(fn, tuple(args), tuple(node.outputs)))
        # Drop each intermediate after its last use so peak memory stays near one layer's worth.
        last_use: dict[str, int] = {}
        for index, step in enumerate(steps):
            for name in step.inputs:
                if name not in self._const_attr:
                    last_use[name] = index
        for index, step in enumerate(steps):
            step.free = tuple(n for n in set(step.inputs) if last_use.get(n) == index and n not in self.output_names)
        return steps

    def _register_const(self, name: str, value: torch.Tensor) -> None:
        attr = f"const_{len(self._const_attr)}"
        self._const_attr[name] = attr
        self.register_buffer(attr, value.to(self.dtype) if value.is_floating_point() else value, persistent=False)

    # -- run -------------------------------------------------------------------------------

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"graph takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), got {len(inputs)}")
        values: dict[str, Any] = dict(zip(self.input_names, inputs))
        for step in self._steps:
            args = [values[n] if n in values else getattr(self, self._const_attr[n]) for n in step.inputs]
            out = step.fn(*args)
            if isinstance(out, tuple) and len(step.outputs) > 1:
                values.update(zip(step.outputs, out))
            else:
                values[step.outputs[0]] = out
            for n in step.free:
                del values[n]
        return tuple(values[n] for n in self.output_names)


def _attrs_raw(node: Any) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fuse_conv_affine(nodes: list[_Node], consts: dict[str, torch.Tensor], outputs: set[str]) -> list[_Node]:
    """Conv -> Mul(c) -> Add(c) with per-channel constants becomes one Conv (weights scaled, bias added)."""
    consumers: dict[str, list[_Node]] = {}
    for node in nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node)
    removed: set[int] = set()
    for conv in nodes:
        if (
            conv.op != "Conv"
            or conv.inputs[1] not in consts
            or (len(conv.inputs) > 2 and conv.inputs[2] and conv.inputs[2] not in consts)
        ):
            continue
        weight = consts[conv.inputs[1]].clone()
        channels = weight.shape[0]
        bias = consts[conv.inputs[2]].clone() if len(conv.inputs) > 2 and conv.inputs[2] else torch.zeros(channels)
        out = conv.outputs[0]
        changed = False
        while out not in outputs and len(consumers.get(out, [])) == 1:
            nxt = consumers[out][0]
            if nxt.op not in ("Mul", "Add") or len(nxt.inputs) != 2:
                break
            other = nxt.inputs[1] if nxt.inputs[0] == out else nxt.inputs[0]
            vector = _channel_vector(consts[other], channels) if other in consts else None
            if vector is None:
                break
            if nxt.op == "Mul":
                weight = weight * vector.view(-1, 1, 1, 1)
                bias = bias * vector
            else:
                bias = bias + vector
            removed.add(id(nxt))
            out = nxt.outputs[0]
            changed = True
        if changed:
            w_name, b_name = f"{conv.name}::fused_weight", f"{conv.name}::fused_bias"
            consts[w_name], consts[b_name] = weight, bias
            conv.inputs = [conv.inputs[0], w_name, b_name]
            conv.outputs = [out]
    return [n for n in nodes if id(n) not in removed]


def _fuse_silu(nodes: list[_Node], outputs: set[str]) -> list[_Node]:
    """Mul(x, Sigmoid(x)) -> SiLU(x): one kernel instead of two and no sigmoid tensor in memory."""
    producer = {o: n for n in nodes for o in n.outputs}
    uses: dict[str, int] = {}
    for node in nodes:
        for i in node.inputs:
            uses[i] = uses.get(i, 0) + 1
    removed: set[int] = set()
    for node in nodes:
        if node.op != "Mul" or len(node.inputs) != 2:
            continue
        for x, s in (node.inputs, node.inputs[::-1]):
            sig = producer.get(s)
            if sig is not None and sig.op == "Sigmoid" and sig.inputs[0] == x and uses.get(s) == 1 and s not in outputs:
                node.op, node.inputs, node.attrs = "SiLU", [x], {}
                removed.add(id(sig))
                break
    return [n for n in nodes if id(n) not in removed]

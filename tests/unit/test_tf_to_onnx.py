"""The TensorFlow-free converter on small frozen graphs built here with its own GraphDef schema.

Each graph is run by onnxruntime after conversion and compared with a numpy implementation of
TensorFlow's semantics written in this file (NHWC, SAME padding with the odd pixel at the end,
depthwise channel order c·M + m, batch norm written out as TF's export leaves it).
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from inspection.detect.tf_graph import GraphFormatError, TfGraph, graph_def_class, read_graph_def
from inspection.detect.tf_to_onnx import TfToOnnx

RNG = np.random.default_rng(7)


class GraphBuilder:
    """Writes NodeDefs the way a TF frozen graph holds them."""

    def __init__(self) -> None:
        self.graph = graph_def_class()()

    def node(self, name: str, op: str, inputs: list[str] = (), **attrs) -> str:
        n = self.graph.node.add()
        n.name, n.op = name, op
        n.input.extend(inputs)
        for key, value in attrs.items():
            a = n.attr[key]
            if isinstance(value, bool):
                a.b = value
            elif isinstance(value, int):
                a.i = value
            elif isinstance(value, float):
                a.f = value
            elif isinstance(value, str):
                a.s = value.encode()
            elif isinstance(value, list):
                a.list.i.extend(value)
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        array = np.asarray(array)
        n = self.graph.node.add()
        n.name, n.op = name, "Const"
        t = n.attr["value"].tensor
        t.dtype = {np.dtype(np.float32): 1, np.dtype(np.int32): 3}[array.dtype]
        for d in array.shape:
            t.tensor_shape.dim.add().size = d
        if array.size == 1 and array.dtype == np.float32:
            t.float_val.append(float(array.reshape(-1)[0]))  # TF writes scalars as a typed value
        else:
            t.tensor_content = array.tobytes()
        n.attr["dtype"].type = t.dtype
        return name

    def read(self, name: str, array: np.ndarray) -> str:
        """A variable as a frozen graph holds it: Const + Identity ("…/read")."""
        return self.node(f"{name}/read", "Identity", [self.const(name, array)])

    def batch_norm_unfolded(self, x: str, name: str, channels: int) -> tuple[str, tuple[np.ndarray, ...]]:
        """TF's export of an inference batch norm: Add/Rsqrt/Mul/Sub on the moving statistics."""
        gamma, beta = RNG.uniform(0.5, 1.5, channels).astype(np.float32), RNG.normal(0, 0.2, channels).astype(np.float32)
        mean, var = RNG.normal(0, 0.3, channels).astype(np.float32), RNG.uniform(0.2, 2.0, channels).astype(np.float32)
        eps = self.const(f"{name}/add/y", np.array(1e-3, np.float32))
        add = self.node(f"{name}/add", "Add", [self.read(f"{name}/moving_variance", var), eps])
        rsqrt = self.node(f"{name}/Rsqrt", "Rsqrt", [add])
        scale = self.node(f"{name}/mul", "Mul", [rsqrt, self.read(f"{name}/gamma", gamma)])
        scaled = self.node(f"{name}/mul_1", "Mul", [x, scale])
        shift = self.node(
            f"{name}/sub",
            "Sub",
            [self.read(f"{name}/beta", beta), self.node(f"{name}/mul_2", "Mul", [self.read(f"{name}/moving_mean", mean), scale])],
        )
        return self.node(f"{name}/add_1", "Add", [scaled, shift]), (gamma, beta, mean, var)

    def convert(self, inputs: str, shape: list, outputs: list[str]):
        return TfToOnnx(TfGraph(self.graph), inputs, shape, outputs).convert()


def run(model, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


# -- numpy reference of the TensorFlow operators ---------------------------------------------------


def tf_pad_same(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TensorFlow's SAME padding of an NHWC batch (the extra pixel at the end)."""
    pads = []
    for size in x.shape[1:3]:
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])


def tf_conv2d(x: np.ndarray, w: np.ndarray, s: int, padding: str = "SAME") -> np.ndarray:
    """NHWC x, HWIO w -> NHWC, float64."""
    k = w.shape[0]
    if padding == "SAME":
        x = tf_pad_same(x, k, s)
    win = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (k, k), axis=(1, 2))[:, ::s, ::s]  # N,OH,OW,C,kh,kw
    return np.einsum("nhwcij,ijco->nhwo", win, w.astype(np.float64))


def tf_depthwise(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    """NHWC x, (kh, kw, C, M) w -> NHWC with channel c·M + m."""
    k, _, c, m = w.shape
    win = np.lib.stride_tricks.sliding_window_view(tf_pad_same(x, k, s).astype(np.float64), (k, k), axis=(1, 2))[:, ::s, ::s]
    out = np.einsum("nhwcij,ijcm->nhwcm", win, w.astype(np.float64))
    return out.reshape(*out.shape[:3], c * m)


def batch_norm(x: np.ndarray, gamma, beta, mean, var, eps: float = 1e-3) -> np.ndarray:
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


# -- tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "stride"), [(9, 1), (9, 2), (10, 2), (7, 2)])
def test_conv_batchnorm_relu6_block_folds_into_one_conv_and_matches_tf(size, stride):
    g = GraphBuilder()
    x = g.node("input", "Placeholder")
    w1 = RNG.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32)
    conv = g.node(
        "conv/Conv2D",
        "Conv2D",
        [x, g.read("conv/weights", w1)],
        strides=[1, stride, stride, 1],
        padding="SAME",
        data_format="NHWC",
        dilations=[1, 1, 1, 1],
    )
    bn, stats = g.batch_norm_unfolded(conv, "conv/BatchNorm/batchnorm", 8)
    relu = g.node("conv/Relu6", "Relu6", [bn])
    wd = RNG.normal(0, 0.3, (3, 3, 8, 2)).astype(np.float32)
    dw = g.node(
        "dw/depthwise",
        "DepthwiseConv2dNative",
        [relu, g.read("dw/weights", wd)],
        strides=[1, 2, 2, 1],
        padding="SAME",
        data_format="NHWC",
    )
    bias = RNG.normal(0, 0.1, 16).astype(np.float32)
    g.node("dw/BiasAdd", "BiasAdd", [dw, g.read("dw/biases", bias)], data_format="NHWC")

    model = g.convert("input:0", [None, size, size, 3], ["dw/BiasAdd:0"])
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 and "Mul" not in ops and "Sub" not in ops, ops  # BN and bias folded into the convs
    xin = RNG.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    ours = run(model, xin)[0]
    ref = tf_depthwise(np.clip(batch_norm(tf_conv2d(xin, w1, stride), *stats), 0, 6), wd, 2) + bias
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_fused_batch_norm_and_residual_add_without_a_conv_to_fold_into():
    g = GraphBuilder()
    x = g.node("input", "Placeholder")
    c = 3
    stats = [RNG.uniform(0.5, 1.5, c), RNG.normal(0, 0.2, c), RNG.normal(0, 0.3, c), RNG.uniform(0.2, 2.0, c)]
    names = [g.const(f"bn/{k}", np.asarray(v, np.float32)) for k, v in zip(("gamma", "beta", "mean", "var"), stats)]
    bn = g.node("bn/FusedBatchNormV3", "FusedBatchNormV3", [x, *names], epsilon=0.001, is_training=False, data_format="NHWC")
    w = RNG.normal(0, 0.3, (1, 1, 3, 3)).astype(np.float32)
    conv = g.node("conv", "Conv2D", [bn, g.const("w", w)], strides=[1, 1, 1, 1], padding="VALID")
    g.node("sum", "AddV2", [conv, bn])
    g.node("out", "Sigmoid", ["sum"])
    model = g.convert("input:0", [None, 5, 5, 3], ["out:0"])
    xin = RNG.uniform(-1, 1, (2, 5, 5, 3)).astype(np.float32)
    normed = batch_norm(xin.astype(np.float64), *stats)
    ref = 1 / (1 + np.exp(-(tf_conv2d(normed, w, 1, "VALID") + normed)))
    np.testing.assert_allclose(run(model, xin)[0], ref, atol=1e-5)


def test_box_predictor_reshape_keeps_the_dynamic_batch_and_tf_element_order():
    """Shape -> StridedSlice -> Pack -> Reshape (the SSD box predictor) and ConcatV2 on axis 1."""
    g = GraphBuilder()
    x = g.node("input", "Placeholder")
    w = RNG.normal(0, 0.3, (1, 1, 3, 8)).astype(np.float32)
    conv = g.node("pred/Conv2D", "Conv2D", [x, g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    shape = g.node("pred/Shape", "Shape", [x], out_type=3)
    batch = g.node(
        "pred/strided_slice",
        "StridedSlice",
        [
            shape,
            g.const("b", np.array([0], np.int32)),
            g.const("e", np.array([1], np.int32)),
            g.const("s", np.array([1], np.int32)),
        ],
        shrink_axis_mask=1,
        begin_mask=0,
        end_mask=0,
        ellipsis_mask=0,
        new_axis_mask=0,
    )
    target = g.node(
        "pred/stack",
        "Pack",
        [
            batch,
            g.const("a", np.array(-1, np.int32)),
            g.const("one", np.array(1, np.int32)),
            g.const("four", np.array(4, np.int32)),
        ],
        axis=0,
    )
    boxes = g.node("pred/Reshape", "Reshape", [conv, target])
    second = g.node("pred/Reshape_1", "Reshape", [x, g.const("flat", np.array([-1, 12, 1, 4], np.int32))])
    g.node("concat", "ConcatV2", [boxes, second, g.const("axis", np.array(1, np.int32))])
    model = g.convert("input:0", [None, 4, 4, 3], ["concat:0"])
    for n in (1, 3):  # the batch is not baked into the graph
        xin = RNG.uniform(-1, 1, (n, 4, 4, 3)).astype(np.float32)
        ref = np.concatenate([tf_conv2d(xin, w, 1).reshape(n, -1, 1, 4), xin.reshape(n, 12, 1, 4)], axis=1)
        out = run(model, xin)[0]
        assert out.shape == (n, 32 + 12, 1, 4)
        np.testing.assert_allclose(out, ref, atol=1e-5)


def test_operator_outside_the_mapped_set_is_named():
    g = GraphBuilder()
    x = g.node("input", "Placeholder")
    g.node("pool", "MaxPool", [x], ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
    with pytest.raises(GraphFormatError, match=r"MaxPool \(e\.g\. node pool\)"):
        g.convert("input:0", [None, 4, 4, 3], ["pool:0"])


def test_not_a_graph_file_is_refused_with_its_name(tmp_path):
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(GraphFormatError, match="empty.pb holds no graph nodes"):
        read_graph_def(empty)
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(GraphFormatError, match="junk.pb is not a TensorFlow GraphDef"):
        read_graph_def(junk)

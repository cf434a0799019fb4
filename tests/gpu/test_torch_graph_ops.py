"""The torch backend's ONNX interpreter, operator by operator, against onnxruntime.

`torch_graph.OPS` implements only the operators of the registered models (SSD-MobileNet-V2 and
YOLOX-Nano). Each one runs here as a one-node ONNX graph, with the attributes those models use,
through `OnnxGraphModule` and through onnxruntime (the project's reference backend); the rewrites
(Conv+Mul+Add folding, SiLU) and the shape arithmetic of TF's converter get their own graphs.
Both whole models are compared in test_torch_backend.py. CPU only, a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install 'inspection[torch]')")
onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'inspection[torch]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from inspection.detect.torch_graph import OPS, SHAPE_OPS, OnnxGraphModule  # noqa: E402

F32 = TensorProto.FLOAT
RNG = np.random.default_rng(13)


def _model(
    nodes, inputs: dict[str, np.ndarray], outputs: list[str], initializers: dict[str, np.ndarray] | None = None, opset: int = 13
):
    """One ONNX model: inputs given as example arrays (their shapes, batch left dynamic)."""

    def info(name, array):
        elem = helper.np_dtype_to_tensor_dtype(array.dtype)
        return helper.make_tensor_value_info(name, elem, ["N", *array.shape[1:]] if array.ndim else [])

    graph = helper.make_graph(
        nodes,
        "g",
        [info(k, v) for k, v in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _case(
    nodes, inputs: dict[str, np.ndarray], outputs: list[str], initializers: dict[str, np.ndarray] | None = None, opset: int = 13
):
    return _model(nodes, inputs, outputs, initializers, opset), inputs


def _run_both(model, inputs: dict[str, np.ndarray], compile_check: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, inputs)
    net = OnnxGraphModule(model).eval()
    args = [torch.from_numpy(inputs[name]) for name in net.input_names]
    with torch.inference_mode():
        got = [t.numpy() for t in net(*args)]
        if compile_check:
            torch._dynamo.reset()
            traced = torch.compile(net, fullgraph=True, backend="eager", dynamic=False)(*args)
            for a, b in zip(traced, got):
                np.testing.assert_array_equal(a.numpy(), b)
    return expected, got


def _close(expected, got, atol=1e-5):
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        np.testing.assert_allclose(g, e.astype(g.dtype) if e.dtype != g.dtype else e, atol=atol, rtol=1e-5)


def _x(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- one case per operator of OPS, with the attributes our models use -------------------------


def _conv_case(pads, strides, group, bias):
    x = _x(2, 8, 11, 13)
    w = _x(8 if group == 8 else 6, 8 // group, 3, 3)
    inits = {"w": w}
    names = ["x", "w"]
    if bias:
        inits["b"] = _x(w.shape[0])
        names.append("b")
    node = helper.make_node("Conv", names, ["y"], kernel_shape=[3, 3], pads=pads, strides=strides, group=group)
    return _model([node], {"x": x}, ["y"], inits), {"x": x}


CASES = {
    "Conv same pads, bias": lambda: _conv_case([1, 1, 1, 1], [1, 1], 1, True),
    "Conv TF SAME stride 2 (bottom/right pads only)": lambda: _conv_case([0, 0, 1, 1], [2, 2], 1, False),
    "Conv depthwise": lambda: _conv_case([1, 1, 1, 1], [1, 1], 8, True),
    "Clip 0..6 (ReLU6)": lambda: _case(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        {"x": _x(2, 3, 4) * 5},
        ["y"],
        {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)},
    ),
    "Clip other bounds": lambda: _case(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        {"x": _x(2, 3, 4)},
        ["y"],
        {"lo": np.array(-0.5, np.float32), "hi": np.array(0.25, np.float32)},
    ),
    "Add broadcast": lambda: _case([helper.make_node("Add", ["x", "c"], ["y"])], {"x": _x(2, 3, 4)}, ["y"], {"c": _x(3, 1)}),
    "Mul two inputs": lambda: _case([helper.make_node("Mul", ["x", "z"], ["y"])], {"x": _x(2, 3, 4), "z": _x(2, 3, 4)}, ["y"]),
    "Sigmoid": lambda: _case([helper.make_node("Sigmoid", ["x"], ["y"])], {"x": _x(2, 5)}, ["y"]),
    "Transpose NHWC->NCHW": lambda: _case(
        [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 1, 2])], {"x": _x(2, 4, 5, 3)}, ["y"]
    ),
    "Reshape constant target with 0": lambda: _case(
        [helper.make_node("Reshape", ["x", "s"], ["y"])], {"x": _x(2, 3, 4, 5)}, ["y"], {"s": np.array([0, -1, 5], np.int64)}
    ),
    "Concat axis 1": lambda: _case(
        [helper.make_node("Concat", ["x", "z"], ["y"], axis=1)], {"x": _x(2, 3, 4), "z": _x(2, 2, 4)}, ["y"]
    ),
    "Slice with step (YOLOX Focus)": lambda: _case(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
        {"x": _x(2, 3, 8, 9)},
        ["y"],
        {
            "st": np.array([1, 0], np.int64),
            "en": np.array([2**62, 2**62], np.int64),
            "ax": np.array([2, 3], np.int64),
            "sp": np.array([2, 2], np.int64),
        },
        opset=11,
    ),
    "Gather on data": lambda: _case(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)],
        {"x": _x(2, 5, 3)},
        ["y"],
        {"i": np.array([[4, -1], [0, 2]], np.int64)},
    ),
    "Cast float to float16 (fp16 graph ends)": lambda: _case(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)], {"x": _x(2, 3)}, ["y"]
    ),
    "MaxPool 5x5 same (YOLOX SPP)": lambda: _case(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], strides=[1, 1])],
        {"x": _x(2, 3, 9, 10)},
        ["y"],
        opset=11,
    ),
    "Resize nearest x2 (YOLOX PAN)": lambda: _case(
        [
            helper.make_node(
                "Resize",
                ["x", "roi", "sc"],
                ["y"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        ],
        {"x": _x(2, 3, 5, 6)},
        ["y"],
        {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 2], np.float32)},
        opset=11,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_matches_onnxruntime(case):
    model, inputs = CASES[case]()
    expected, got = _run_both(model, inputs)
    # Float casts keep the module's compute dtype (fp32 here): onnxruntime's fp16 rounding is the difference.
    _close(expected, got, atol=2e-3 if "float16" in case else 1e-4)


def test_every_interpreted_operator_has_a_case():
    covered = {key.split()[0] for key in CASES} | {"SiLU"}  # SiLU: our rewrite, tested below
    assert set(OPS) == covered
    assert set(SHAPE_OPS) == {"Shape", "Gather", "Cast", "Slice", "Concat"}


# -- rewrites and shape arithmetic -------------------------------------------------------------


def test_conv_mul_add_folding_and_silu_match_onnxruntime():
    """Conv -> Mul(c) -> Add(c) (a folded batch norm) -> x*Sigmoid(x), as TF's and YOLOX's exports write them."""
    x = _x(2, 4, 9, 9)
    inits = {"w": _x(4, 1, 3, 3), "m": _x(1, 4, 1, 1), "a": _x(4, 1, 1)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Mul", ["c", "m"], ["cm"]),
        helper.make_node("Add", ["cm", "a"], ["ca"]),
        helper.make_node("Sigmoid", ["ca"], ["s"]),
        helper.make_node("Mul", ["ca", "s"], ["y"]),
    ]
    model = _model(nodes, {"x": x}, ["y"], inits)
    net = OnnxGraphModule(model)
    assert [s.fn.__name__ for s in net._steps] == ["conv", "silu"]  # both rewrites applied
    expected, got = _run_both(model, {"x": x}, compile_check=True)
    _close(expected, got)


def test_shape_arithmetic_of_tf_box_predictors_runs_on_python_ints():
    """Shape -> Gather -> Cast -> Slice -> Concat(constants) -> Cast -> Reshape, TF's reshape of each box
    predictor: computed from x.shape on every call (any batch), traced by torch.compile without a break."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "first"], ["n"], axis=0),
        helper.make_node("Cast", ["n"], ["n32"], to=TensorProto.INT32),
        helper.make_node("Slice", ["n32", "s0", "s1", "ax"], ["n_"]),
        helper.make_node("Concat", ["n_", "minus1", "four"], ["target32"], axis=0),
        helper.make_node("Cast", ["target32"], ["target"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {
        "first": np.array([0], np.int64),
        "s0": np.array([0], np.int64),
        "s1": np.array([1], np.int64),
        "ax": np.array([0], np.int64),
        "minus1": np.array([-1], np.int32),
        "four": np.array([4], np.int32),
    }
    model = _model(nodes, {"x": _x(3, 5, 5, 8)}, ["y"], inits)
    for batch in (3, 1):
        x = _x(batch, 5, 5, 8)
        expected, got = _run_both(model, {"x": x}, compile_check=batch == 3)
        assert got[0].shape == (batch, 50, 4)
        _close(expected, got)


def test_unsupported_operators_are_named_at_load_time():
    node = helper.make_node("Einsum", ["x", "x"], ["y"], equation="ij,ij->ij")
    with pytest.raises(NotImplementedError, match="Einsum.*onnxruntime"):
        OnnxGraphModule(_model([node], {"x": _x(2, 2)}, ["y"]))
    # An operator the data path has but the shape path has not (shape arithmetic is Python ints).
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Mul", ["s", "two"], ["t"]),
        helper.make_node("Reshape", ["x", "t"], ["y"]),
    ]
    with pytest.raises(NotImplementedError, match="Mul.*on a shape"):
        OnnxGraphModule(_model(nodes, {"x": _x(2, 2)}, ["y"], {"two": np.array([1, 1], np.int64)}))


def test_inductor_compiles_the_interpreter_on_cpu():
    """A CPU smoke test of the real compiler (inductor, C++ kernels) on a small graph with the SSD's
    patterns: TF SAME stride-2 conv, folded batch norm, ReLU6, shape arithmetic, reshape, concat.
    The whole SSD compiles in minutes on a 2-core CPU: that runs in the GPU tests and the timing script."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w"], ["c"], kernel_shape=[3, 3], pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("Mul", ["c", "m"], ["cm"]),
        helper.make_node("Add", ["cm", "a"], ["ca"]),
        helper.make_node("Clip", ["ca", "lo", "hi"], ["r"]),
        helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["rt"], ["shape"]),
        helper.make_node("Gather", ["shape", "first"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus1", "four"], ["target"], axis=0),
        helper.make_node("Reshape", ["rt", "target"], ["boxes"]),
        helper.make_node("Sigmoid", ["boxes"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1),
    ]
    inits = {
        "w": _x(8, 3, 3, 3),
        "m": _x(1, 8, 1, 1),
        "a": _x(8, 1, 1),
        "lo": np.array(0, np.float32),
        "hi": np.array(6, np.float32),
        "first": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
        "four": np.array([4], np.int64),
    }
    x = _x(2, 17, 17, 3)
    model = _model(nodes, {"x": x}, ["y"], inits)
    import onnxruntime as ort

    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    torch._dynamo.reset()
    net = OnnxGraphModule(model).eval()
    with torch.inference_mode():
        got = torch.compile(net, fullgraph=True, dynamic=False)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)

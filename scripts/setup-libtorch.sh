#!/usr/bin/env bash
# Installs libtorch for tch from PyPI's `torch` wheel (libtorch itself cannot be downloaded here),
# trimmed to what linking and running need, into .libtorch/ (git-ignored). Idempotent: a second
# run with the same version and flavour returns at once.
#
#   scripts/setup-libtorch.sh          CPU flavour (~0.5 GB): torch_cpu + CUDA runtime stubs
#   scripts/setup-libtorch.sh --cuda   full flavour: also libtorch_cuda (for `--features cuda`)
#
# Why the two nvidia wheels even for CPU: the 2.11.0 wheel is a CUDA 13 build whose
# libtorch_cpu.so needs libcudart.so.13 and libcupti.so.13 at load time, found through its
# RPATH $ORIGIN/../../nvidia/cu13/lib - so the layout torch/ + nvidia/cu13/lib is kept.
set -euo pipefail

TORCH_VERSION=2.11.0          # must match tch = "=0.24.0" (torch-sys checks the exact version)
CUDA_RUNTIME="nvidia-cuda-runtime==13.0.*"
CUDA_CUPTI="nvidia-cuda-cupti==13.0.*"

flavour=cpu
[ "${1:-}" = "--cuda" ] && flavour=cuda

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.libtorch"
stamp="$dest/.installed"
want="torch=$TORCH_VERSION flavour=$flavour"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# A cuda install also serves CPU builds.
if [ "$flavour" = cpu ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "torch=$TORCH_VERSION flavour=cuda" ]; then
  exit 0
fi

cache="${ISTS_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ists/wheels}"
mkdir -p "$cache"
py=$(command -v python3 || command -v python)
pyver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
if ! ls "$cache"/torch-"$TORCH_VERSION"-*.whl >/dev/null 2>&1; then
  echo "setup-libtorch: downloading torch==$TORCH_VERSION (about 530 MB, once) into $cache" >&2
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 "torch==$TORCH_VERSION" -d "$cache"
fi
if ! ls "$cache"/nvidia_cuda_runtime-13.0.*.whl >/dev/null 2>&1 || ! ls "$cache"/nvidia_cuda_cupti-13.0.*.whl >/dev/null 2>&1; then
  "$py" -m pip download -q --no-deps --only-binary=:all: "$CUDA_RUNTIME" "$CUDA_CUPTI" -d "$cache"
fi

tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
whl=$(ls "$cache"/torch-"$TORCH_VERSION"-*.whl | head -n1)
echo "setup-libtorch: unpacking $(basename "$whl") ($flavour)" >&2
"$py" - "$whl" "$tmp" "$flavour" <<'PY'
import sys, zipfile, os
whl, dest, flavour = sys.argv[1], sys.argv[2], sys.argv[3]
# Only what linking (headers, .so) and running need; python bindings and big CUDA libs go.
drop_cpu = ("libtorch_cuda.so", "libtorch_cuda_linalg.so", "libtorch_python.so",
            "libtorch_nvshmem.so", "libc10_cuda.so", "libcaffe2_nvrtc.so")
drop_all = ("libtorch_python.so",)
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        n = info.filename
        if not (n.startswith("torch/include/") or n.startswith("torch/lib/")):
            continue
        base = os.path.basename(n)
        if base in (drop_cpu if flavour == "cpu" else drop_all):
            continue
        z.extract(info, dest)
PY
for w in "$cache"/nvidia_cuda_runtime-13.0.*.whl "$cache"/nvidia_cuda_cupti-13.0.*.whl; do
  "$py" - "$w" "$tmp" <<'PY'
import sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        n = info.filename
        if n.startswith("nvidia/cu13/lib/") and (".so" in n) and ("cudart" in n or "cupti" in n):
            z.extract(info, dest)
PY
done
rm -rf "$dest"
mv "$tmp" "$dest"
echo "$want" > "$stamp"
echo "setup-libtorch: installed $(du -sh "$dest" | cut -f1) in $dest" >&2

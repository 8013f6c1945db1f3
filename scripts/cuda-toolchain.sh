#!/usr/bin/env bash
# A CUDA toolchain for building toylens's `cuda` feature on a machine with no GPU and no system
# CUDA: NVIDIA's compiler, runtime and headers from PyPI, installed into one directory.
#
#   eval "$(scripts/cuda-toolchain.sh)"          # installs into ~/.cache/toylens-cuda, prints env
#   cargo build --release --features cuda
#
# Version: CUDA 13.0 by default (TOYLENS_CUDA_VERSION=13.4 picks a newer one, up to 13.4, the
# newest that cudarc 0.19 knows). A driver rejects PTX from a toolkit newer than itself, and
# the R580 drivers (the oldest that run CUDA 13) load 13.0's. The CUDA 12 wheels on PyPI
# (nvidia-cuda-nvcc-cu12, every 12.x release) ship ptxas and headers but not the nvcc driver,
# cicc or libdevice, so they cannot compile candle's kernels; the CUDA 13 split wheels can. CUDA_COMPUTE_CAP picks
# the GPU generation for the statically compiled kernels (80 Ampere, 90 Hopper); the PTX JIT
# runs code built for 80 on later GPUs too.
set -euo pipefail
DEST=${TOYLENS_CUDA_DIR:-$HOME/.cache/toylens-cuda}
VERSION=${TOYLENS_CUDA_VERSION:-13.0}
PY=${PYTHON:-python3}

# A toolkit of another version already there is replaced.
if [ ! -x "$DEST/cuda/bin/nvcc" ] || [ "$(cat "$DEST/version" 2>/dev/null)" != "$VERSION" ]; then
    echo "installing the CUDA $VERSION toolchain into $DEST" >&2
    rm -rf "$DEST"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$DEST/wheels" \
        "nvidia-cuda-nvcc==$VERSION.*" "nvidia-nvvm==$VERSION.*" "nvidia-cuda-crt==$VERSION.*" \
        "nvidia-cuda-runtime==$VERSION.*" "nvidia-cuda-nvrtc==$VERSION.*" \
        "nvidia-cuda-cccl==$VERSION.*" "nvidia-cublas==$VERSION.*" "nvidia-curand<10.5" >&2
    # The cu13 wheels share one prefix, laid out like a CUDA install.
    ln -s "$DEST/wheels/nvidia/cu13" "$DEST/cuda"
    [ -e "$DEST/cuda/lib64" ] || ln -s lib "$DEST/cuda/lib64"
    # The wheels ship versioned shared objects only; the linker looks for the plain names.
    for lib in "$DEST"/cuda/lib/lib*.so.*; do
        plain="${lib%%.so.*}.so"
        [ -e "$plain" ] || ln -s "$(basename "$lib")" "$plain"
    done
    chmod +x "$DEST"/cuda/bin/* "$DEST"/cuda/nvvm/bin/* 2>/dev/null || true
    echo "$VERSION" >"$DEST/version"
fi

# candle links the driver library (libcuda.so.1), which only an NVIDIA driver installs. As CUDA
# toolkits do for build machines, link against a stub that defines every driver entry point
# cudarc declares; at run time the real driver's library is loaded instead. Every stub entry
# returns CUDA_ERROR_NO_DEVICE (100), so on a machine with no driver at all the stub can also be
# put on LD_LIBRARY_PATH: toylens then starts, finds no device and falls back to the CPU.
if [ ! -e "$DEST/cuda/lib/stubs/libcuda.so" ]; then
    REPO=$(cd "$(dirname "$0")/.." && pwd)
    (cd "$REPO" && cargo fetch --quiet)
    SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19*/src/driver/sys/mod.rs | tail -1)
    mkdir -p "$DEST/cuda/lib/stubs"
    # The extern declarations are the symbols the binary links against.
    grep -oE '^ +fn cu[A-Za-z0-9_]+' "$SYS" | awk '{print $2}' | sort -u \
        | sed 's/.*/int &(void) { return 100; }/' >"$DEST/cuda/lib/stubs/libcuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$DEST/cuda/lib/stubs/libcuda.so" \
        "$DEST/cuda/lib/stubs/libcuda-stub.c"
    ln -s libcuda.so "$DEST/cuda/lib/stubs/libcuda.so.1"
fi

"$DEST/cuda/bin/nvcc" --version | tail -2 >&2
major=${VERSION%%.*}
minor=${VERSION#*.}
cat <<ENV
export CUDA_HOME="$DEST/cuda"
export CUDA_PATH="$DEST/cuda"
export PATH="$DEST/cuda/bin:\$PATH"
export LIBRARY_PATH="$DEST/cuda/lib:$DEST/cuda/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$DEST/cuda/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDARC_CUDA_VERSION=${major}0${minor}0
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-80}
# Run-time libraries for a cuda build: LD_LIBRARY_PATH above. On a machine with no NVIDIA driver,
# add the stub too ($DEST/cuda/lib/stubs) so the binary starts and falls back to the CPU.
ENV

#!/usr/bin/env bash
# A CUDA toolchain for building toylens's `cuda` feature on a machine with no GPU and no system
# CUDA: NVIDIA's compiler, runtime and headers from PyPI, installed into one directory.
#
#   eval "$(scripts/cuda-toolchain.sh)"          # installs into ~/.cache/toylens-cuda, prints env
#   cargo build --release --features cuda
#
# Version: CUDA 13.4. The CUDA 12 wheels on PyPI (nvidia-cuda-nvcc-cu12, every 12.x release)
# ship ptxas and headers but not the nvcc driver, cicc or libdevice, so they cannot compile
# candle's kernels; the CUDA 13 split wheels can. 13.4 is the newest that cudarc 0.19 knows.
# PTX from CUDA 13 needs an NVIDIA driver of the R580 series or newer. CUDA_COMPUTE_CAP picks
# the GPU generation for the statically compiled kernels (80 Ampere, 90 Hopper); the PTX JIT
# runs code built for 80 on later GPUs too.
set -euo pipefail
DEST=${TOYLENS_CUDA_DIR:-$HOME/.cache/toylens-cuda}
VERSION=${TOYLENS_CUDA_VERSION:-13.4}
PY=${PYTHON:-python3}

if [ ! -x "$DEST/cuda/bin/nvcc" ]; then
    echo "installing the CUDA $VERSION toolchain into $DEST" >&2
    rm -rf "$DEST"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$DEST/wheels" \
        "nvidia-cuda-nvcc==$VERSION.*" "nvidia-nvvm==$VERSION.*" "nvidia-cuda-crt==$VERSION.*" \
        "nvidia-cuda-runtime==$VERSION.*" "nvidia-cuda-nvrtc==$VERSION.*" \
        "nvidia-cuda-cccl<13.5" >&2
    # The cu13 wheels share one prefix, laid out like a CUDA install.
    ln -s "$DEST/wheels/nvidia/cu13" "$DEST/cuda"
    [ -e "$DEST/cuda/lib64" ] || ln -s lib "$DEST/cuda/lib64"
    # The wheels ship versioned shared objects only; the linker looks for the plain names.
    for lib in "$DEST"/cuda/lib/lib*.so.*; do
        plain="${lib%%.so.*}.so"
        [ -e "$plain" ] || ln -s "$(basename "$lib")" "$plain"
    done
    chmod +x "$DEST"/cuda/bin/* "$DEST"/cuda/nvvm/bin/* 2>/dev/null || true
fi

"$DEST/cuda/bin/nvcc" --version | tail -2 >&2
major=${VERSION%%.*}
minor=${VERSION#*.}
cat <<ENV
export CUDA_HOME="$DEST/cuda"
export CUDA_PATH="$DEST/cuda"
export PATH="$DEST/cuda/bin:\$PATH"
export LIBRARY_PATH="$DEST/cuda/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$DEST/cuda/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDARC_CUDA_VERSION=${major}0${minor}0
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-80}
ENV

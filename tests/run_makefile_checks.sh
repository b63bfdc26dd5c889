#!/usr/bin/env bash
# Checks of the build's own promises (make -n: nothing is built): a missing nlohmann/json stops
# the build up front with a message naming the fix; a CUDA_ARCH that is not digits falls back to
# 90 with a message; DEPS=0 keeps `make test` and `make demo` off the network (no `deps` step);
# cudnn-frontend switches off cleanly.
set -u
# Run as the top-level make would be (the probes print at MAKELEVEL 0 only), also when this script
# itself runs under `make test`.
unset MAKELEVEL MAKEFLAGS MFLAGS
problems=()
expect() {  # description, fragment, then the make arguments
    local description=$1 fragment=$2; shift 2
    local output; output=$(make -n --no-print-directory "$@" 2>&1)
    grep -qF -- "$fragment" <<<"$output" || problems+=("$description: 'make -n $*' does not print '$fragment'")
}
expect_not() {
    local description=$1 fragment=$2; shift 2
    local output; output=$(make -n --no-print-directory "$@" 2>&1)
    grep -qF -- "$fragment" <<<"$output" && problems+=("$description: 'make -n $*' prints '$fragment'")
}

expect "missing json" "nlohmann/json is missing" lib HAVE_JSON=0
if make -n lib HAVE_JSON=0 >/dev/null 2>&1; then problems+=("missing json: make lib HAVE_JSON=0 succeeded"); fi
expect "json missing, deps still allowed" "deps" deps HAVE_JSON=0
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    expect "bad CUDA_ARCH" "CUDA_ARCH='sm_90' is not a compute capability" -B build/obj/kernels/cuda/init.cu.o CUDA_ARCH=sm_90
    expect "bad CUDA_ARCH falls back" "arch=compute_90,code=sm_90" -B build/obj/kernels/cuda/init.cu.o CUDA_ARCH=sm_90
    expect "good CUDA_ARCH" "arch=compute_80,code=sm_80" -B build/obj/kernels/cuda/init.cu.o CUDA_ARCH=80
fi
# cudnn-frontend is optional: off by request or in a CPU-only build, the fused attention is not
# compiled (and says so); on, only kernels/cudnn/ sees its headers, without its bundled JSON.
expect "frontend off" "-DMP_CUDNN_FRONTEND=0" -B build/obj/tensor/ops/attention_fused.o HAVE_CUDNN_FRONTEND=0
expect "frontend off: probe says so" "✗ cudnn-frontend" -B build/obj/tensor/ops/attention_fused.o HAVE_CUDNN_FRONTEND=0
expect "cpu-only: frontend not used" "cudnn-frontend not used" -B build/obj/tensor/ops/attention_fused.o CUDA=0
if make -n --no-print-directory lib 2>&1 | grep -qF '✓ cudnn-frontend'; then
    expect "frontend on" "-DCUDNN_FRONTEND_SKIP_JSON_LIB" -B build/obj/kernels/cudnn/attention_fused.o
fi
expect_not "DEPS=0 test" "apt-get" test DEPS=0
expect_not "DEPS=0 demo" "apt-get" demo DEPS=0
expect "DEPS=1 test" "apt-get" test DEPS=1

echo "==== Makefile checks"
if [ ${#problems[@]} -eq 0 ]; then
    echo "  makefile                     ran    1  passed    1  skipped    0  failed    0"
else
    printf '  problem: %s\n' "${problems[@]}"
    exit 1
fi

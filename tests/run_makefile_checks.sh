#!/usr/bin/env bash
# Checks of the build's own promises (make -n: nothing is built): a missing nlohmann/json stops
# the build up front with a message naming the fix; a CUDA_ARCH that is not digits falls back to
# 90 with a message; DEPS=0 keeps `make test` and `make demo` off the network (no `deps` step);
# cudnn-frontend switches off cleanly; nvidia-smi is asked only by goals that compile CUDA, once;
# the CPU kernels keep their flags.
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
# The CPU kernels' own flags (no fused multiply-adds: their bits) survive a CXXFLAGS given on the
# command line, reach no other file, and SIMD_CLONES=0 turns the multi-versioned functions off.
expect "cpu kernel flags with CXXFLAGS=-O1" "-ffp-contract=off" -B build/obj/kernels/cpu/gemm.o CXXFLAGS=-O1
expect_not "cpu kernel flags elsewhere" "-ffp-contract=off" -B build/obj/tensor/tensor.o
expect "SIMD_CLONES=0" "-DMP_NO_SIMD_CLONES" -B build/obj/kernels/cpu/activations.o SIMD_CLONES=0
expect_not "SIMD clones by default" "-DMP_NO_SIMD_CLONES" -B build/obj/kernels/cpu/activations.o
expect_not "DEPS=0 test" "apt-get" test DEPS=0
expect_not "DEPS=0 demo" "apt-get" demo DEPS=0
expect "DEPS=1 test" "apt-get" test DEPS=1

# nvidia-smi (for the default CUDA_ARCH) is run only when CUDA_ARCH is needed, and at most once: a fake
# one on PATH counts its calls.
fake_bin=$(mktemp -d)
cat >"$fake_bin/nvidia-smi" <<FAKE
#!/bin/sh
echo called >>"$fake_bin/calls"
echo 9.0
FAKE
chmod +x "$fake_bin/nvidia-smi"
smi_calls() {  # the make arguments; prints how many times nvidia-smi ran
    rm -f "$fake_bin/calls"
    PATH="$fake_bin:$PATH" make -n --no-print-directory "$@" >/dev/null 2>&1
    if [ -f "$fake_bin/calls" ]; then wc -l <"$fake_bin/calls"; else echo 0; fi
}
for goal in clean help "lib CUDA=0"; do
    calls=$(smi_calls $goal)
    [ "$calls" = 0 ] || problems+=("make -n $goal ran nvidia-smi $calls times (expected none)")
done
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    calls=$(smi_calls -B build/obj/kernels/cuda/init.cu.o build/obj/kernels/cuda/softmax.cu.o)
    [ "$calls" = 1 ] || problems+=("two CUDA compiles ran nvidia-smi $calls times (expected once)")
    calls=$(smi_calls -B build/obj/kernels/cuda/init.cu.o CUDA_ARCH=80)
    [ "$calls" = 0 ] || problems+=("CUDA_ARCH=80 given, yet nvidia-smi ran $calls times")
fi
rm -rf "$fake_bin"

echo "==== Makefile checks"
if [ ${#problems[@]} -eq 0 ]; then
    echo "  makefile                     ran    1  passed    1  skipped    0  failed    0"
else
    printf '  problem: %s\n' "${problems[@]}"
    exit 1
fi

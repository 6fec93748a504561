#!/bin/sh
# Builds and runs the single-process paired bench of the direct AVX-512 convolution
# (scripts/directconv_bench/main.swift) against this checkout's Sources/KernelsAVX512 files.
# Usage (package root): scripts/directconv_bench.sh [THREADS [VARIANT [BASE]]]   e.g. scripts/directconv_bench.sh 1 15 0
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
out=${TMPDIR:-/tmp}/directconv_bench
swiftc -wmo -Ounchecked -target-cpu skylake-avx512 -module-name DirectConvBench \
    "$root/Sources/KernelsAVX512/DirectConvolution.swift" "$root/Sources/KernelsAVX512/MicroKernels.swift" \
    "$root/scripts/directconv_bench/main.swift" -o "$out"
grep -q avx512f /proc/cpuinfo || { echo "no AVX-512F on this CPU"; exit 1; }
exec "$out" "$@"

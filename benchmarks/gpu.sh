#!/usr/bin/env bash
# Issue 5's GPU figures in one go, on a machine with a CUDA GPU and tm's dependencies:
#
#     bash benchmarks/gpu.sh SPEECH.wav OUTDIR
#
# Checks first that a GPU render matches the CPU's (benchmarks/device_match.py), then runs
# `tm bench` on the GPU (fp32, bf16, the 512 px crop, the teacher, the generator in a process of
# its own, the student's chunk step as a CUDA graph) and the generator's speed benchmark. Each
# bench writes OUTDIR/NAME.json and NAME.txt; copy the figures into benchmarks/RESULTS.md with
# the date, device and commit.
set -uo pipefail
audio=${1:?speech wav}
out=${2:?output folder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 benchmarks/device_match.py --device cuda --dtype fp32 2>&1 | tee "$out/match_fp32.txt"
python3 benchmarks/device_match.py --device cuda --dtype bf16 2>&1 | tee "$out/match_bf16.txt"

bench() {
    local name=$1
    shift
    echo "== tm bench $*"
    python3 -m tmcli bench --audio "$audio" --json "$out/$name.json" "$@" 2>&1 | tee "$out/$name.txt"
}
bench cuda --device cuda
bench cuda_again --device cuda  # the spread between two identical runs
bench cuda_bf16 --device cuda --dtype bf16
bench cuda_crop --device cuda --crop
bench cuda_teacher --device cuda --generator teacher
bench cuda_disaggregate --device cuda --disaggregate
printf '[generator]\ncuda_graph = true\n' > "$out/graphed.toml"  # the student's chunk step as a CUDA graph
bench cuda_graphed --device cuda --preset "$out/graphed.toml"
bench cuda_graphed_again --device cuda --preset "$out/graphed.toml"
bench cuda_graphed_crop --device cuda --crop --preset "$out/graphed.toml"
python3 benchmarks/generator_speed.py --device cuda --checkpoint tmcli/weights/teacher \
    --student tmcli/weights/student 2>&1 | tee "$out/generator_speed.txt"

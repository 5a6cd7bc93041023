#!/usr/bin/env bash
# Every GPU figure ConvLens reports, in one run on a machine with an NVIDIA GPU (the device
# tool's H100/H200: 16 cores, no network, CUDA image with python3 + torch + onnx), within a
# time budget (GPU_CHECK_BUDGET_S, default 450 s).
#
#   scripts/gpu_check.sh [CONVLENS_BINARY[.xz]]  (default: target/release/convlens, else
#                                                 target/debug/convlens; carry one along, xz
#                                                 compressed if large: the machine has no cargo)
#
# Writes to $OUT (the device tool's output folder) or ./gpu_check_out:
#   gpu_check.json   every figure below, merged (one key per step)
#   bench_*.json     `convlens bench --device gpu --json`: AlexNet-shaped (the network of
#                    scripts/bench_reference.py), the embedded EfficientNet-Lite0, and a
#                    10,240-filter layer (frame of 10,000 tiles); CPU runs of the same for scale;
#                    batches of 16 (and 64): `forward_batch_images_per_s`
#   torch_cuda.json  PyTorch on the same GPU: AlexNet-shaped forward and all-filter batched GBP
#   compare_*.json   GPU vs CPU exports: worst relative error per layer, top-5 classes equal
#   *.png            screenshots rendered on the GPU (wide: >= 10,000 tiles)
#   log.txt          everything the steps printed
# Vulkan loader libraries: if ./.gl holds .deb files (see the device tool's README) they are
# unpacked first.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
log="$out/log.txt"
: >"$log"
say() { echo "== $*" | tee -a "$log" >&2; }

bin="${1:-}"
if [ -z "$bin" ]; then
  for b in target/release/convlens target/debug/convlens; do
    [ -x "$b" ] && bin="$b" && break
  done
fi
if [[ "$bin" == *.xz ]]; then
  # A compressed binary (the device tool carries at most 64 MiB).
  xz -dc "$bin" >/tmp/convlens-gpu-check 2>/dev/null \
    || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$bin" /tmp/convlens-gpu-check
  chmod +x /tmp/convlens-gpu-check
  bin=/tmp/convlens-gpu-check
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  say "no convlens binary (give one as the first argument)"
  exit 2
fi

if compgen -G ".gl/*.deb" >/dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"

# The whole run stays within $GPU_CHECK_BUDGET_S seconds (default 450): the steps run in
# order of importance, each limited to what is left of the budget, and those that no longer
# fit are skipped (recorded as {"skipped": ...}).
budget="${GPU_CHECK_BUDGET_S:-450}"

# step NAME SECONDS CMD...: runs CMD with a time limit, stdout to $out/NAME.json when NAME
# ends in .json, else to the log; records a failure as {"failed": ...}.
step() {
  local name="$1" limit="$2"
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -lt 15 ]; then
    say "$name: skipped, $left s of the budget left"
    [[ "$name" == *.json ]] && printf '{"skipped": "out of time budget"}\n' >"$out/$name"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$name (limit $limit s): $*"
  local started=$SECONDS rc
  if [[ "$name" == *.json ]]; then
    timeout "$limit" "$@" >"$out/$name" 2>>"$log"
    rc=$?
  else
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
  fi
  say "$name: exit $rc after $((SECONDS - started)) s"
  if [ "$rc" -ne 0 ] && [[ "$name" == *.json ]]; then
    printf '{"failed": true, "exit": %d, "limit_s": %d}\n' "$rc" "$limit" >"$out/$name"
  fi
  return 0
}

models="$out/models"
{
  printf '{"date": "%s", "host_cpu": "%s", "cores": %s, ' "$(date -u +%FT%TZ)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" "$(nproc)"
  printf '"isa": "%s", ' "$(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  printf '"gpu": "%s", ' "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  printf '"binary": "%s", "git": "%s"}\n' "$bin" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$out/machine.json"
cat "$out/machine.json" >>"$log"

step version 60 "$bin" --version
step models 120 python3 scripts/gpu_check.py models "$models"
alex="$models/alexnet_seeded.onnx"
npy="$models/input.npy"

# The issue-6 targets (AlexNet-shaped): forward, input -> tiles, then all-filter GBP; a frame
# of 10,000 tiles; the default model's forward and input -> tiles.
step bench_alexnet_gpu.json 60 "$bin" bench "$alex" --input "$npy" --device gpu --json \
  --repeats 20 --warmup 3 --skip-gbp
step bench_alexnet_gbp_gpu.json 150 "$bin" bench "$alex" --input "$npy" --device gpu --json \
  --repeats 3 --warmup 1
step bench_wide_gpu.json 60 "$bin" bench "$models/wide.onnx" --input "$npy" --device gpu \
  --json --repeats 20 --warmup 3 --skip-gbp
step bench_efficientnet_gpu.json 60 "$bin" bench --device gpu --json --repeats 20 --warmup 3 \
  --skip-gbp
step torch_cuda.json 90 python3 scripts/gpu_check.py torch-ref /dev/stdout
# Batches on the GPU (issue 14): every bench above measured batch 1 and 16
# (forward_batch_images_per_s); the default model at batch 64 too, and an occlusion sweep
# (225 squares, 8 per pass; the log has its seconds).
step bench_efficientnet_batch64_gpu.json 60 "$bin" bench --device gpu --json --repeats 10 \
  --warmup 2 --skip-gbp --batch 64
# Feature visualisation (issue 16): seconds per filter at 512 steps and 128 px (target on a
# GPU: 0.1 s), AlexNet-shaped conv5 and a middle layer of EfficientNet-Lite0.
step bench_alexnet_featvis_gpu.json 60 "$bin" bench "$alex" --device gpu --json --repeats 3 \
  --warmup 1 --skip-gbp --batch 1 --featvis
step bench_efficientnet_featvis_gpu.json 60 "$bin" bench --device gpu --json --repeats 3 \
  --warmup 1 --skip-gbp --batch 1 --featvis --featvis-layer /_blocks.8/_expand_conv/Conv
step occlusion_efficientnet_gpu 60 "$bin" export --input assets/images/coffee.png \
  --methods occlusion --layers /_conv_stem/Conv --device gpu --out "$out/occlusion"
rm -rf "$out/occlusion"

# GPU vs CPU: the same exports on both devices, compared array by array.
for model in alexnet efficientnet; do
  if [ "$model" = alexnet ]; then
    args=("$alex" --input "$npy" --methods forward,gbp)
  else
    args=(--input assets/images/coffee.png --methods forward)
  fi
  for dev in gpu cpu; do
    step "export_${model}_$dev" 60 "$bin" export "${args[@]}" --device "$dev" --raw \
      --layers conv --out "$out/exports/${model}_$dev"
  done
  step "compare_$model.json" 60 python3 scripts/gpu_check.py compare \
    "$out/exports/${model}_gpu" "$out/exports/${model}_cpu" /dev/stdout
  rm -rf "$out/exports"
done

step screenshot_wide 45 "$bin" view "$models/wide.onnx" --input "$npy" --device gpu \
  --layer conv_wide --screenshot "$out/wide_10240.png"
step screenshot_efficientnet_gbp 60 "$bin" view --device gpu --method gbp \
  --layer /_blocks.10/_project_conv/Conv --screenshot "$out/efficientnet_gbp.png"

# For scale: the same AlexNet-shaped bench on this machine's CPU cores (flex).
step bench_alexnet_cpu.json 60 "$bin" bench "$alex" --input "$npy" --device cpu --json \
  --repeats 5 --warmup 1
# EfficientNet-Lite0's all-filter GBP (21,008 filters) last: the longest, least critical figure.
step bench_efficientnet_gbp_gpu.json 120 "$bin" bench --device gpu --json --repeats 1 --warmup 0
rm -rf "$models"

python3 scripts/gpu_check.py merge "$out"
say "done in $SECONDS s; figures in $out/gpu_check.json"

#!/usr/bin/env bash
# Trains the misaligned reference adapters that Interleaving+ and Interleaving++ score the safety
# pool against, for the shipped local model SmolLM2-135M-Instruct: one LoRA adapter per narrow
# misaligned dataset (conf/datasets/medical-misaligned.jsonl, financial-misaligned.jsonl),
# trained with `tuneguard train` under conf/datasets/reference-adapters.toml into
#   models/adapters/SmolLM2-135M-Instruct/{medical,financial}/   (git-ignored, never committed)
# exactly where the shipped config's [[models]] entry for SmolLM2 names them (`adapters`).
# Before this script ran, a plusplus/plus job on SmolLM2 fails with a message naming it.
#
# Usage: scripts/train-reference-adapters.sh [--quick] [--force]
#   --quick   2 optimizer steps per adapter (about a minute): proves the pipeline, gives
#             barely-trained adapters (a later run without --quick replaces them)
#   --force   retrain adapters that are already there
# Environment: TUNEGUARD_BIN (default: a release build of this checkout).
# A full run is 2 epochs of 320 examples per adapter (80 steps): about 15–25 minutes for both
# on 2 CPU cores. Ctrl-C stops at a checkpoint; run it again to continue from there.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
force=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "train-reference-adapters.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
root="models/adapters/SmolLM2-135M-Instruct"
policy="conf/datasets/reference-adapters.toml"
quick_steps=2

bash scripts/fetch-model.sh
bin="${TUNEGUARD_BIN:-}"
if [ -z "$bin" ]; then
  source scripts/lib/built.sh
  bin=$(built tuneguard --release --bin tuneguard)
fi
test -x "$bin" || { echo "train-reference-adapters.sh: no tuneguard binary at '$bin'" >&2; exit 1; }

# mode DIR: "full", "quick", or "" when DIR holds no finished adapter of this script.
mode() {
  [ -f "$1/adapter_config.json" ] && [ -f "$1/reference.json" ] || return 0
  if grep -q '"quick": true' "$1/reference.json"; then echo quick; else echo full; fi
}

for name in medical financial; do
  data="conf/datasets/$name-misaligned.jsonl"
  dest="$root/$name"
  have="$(mode "$dest")"
  if [ "$force" = 0 ] && { [ "$have" = full ] || { [ "$have" = quick ] && [ "$quick" = 1 ]; }; }; then
    echo "== $dest is there ($have); --force retrains it"
    continue
  fi
  work="$root/.$name.partial"
  args=(train --model "$model" --data "$data" --out "$work" --policy "$policy")
  if [ "$quick" = 1 ]; then
    args+=(--max-steps "$quick_steps")
  fi
  # Continue an interrupted run of the same mode; start afresh otherwise.
  if [ -d "$work/checkpoints" ] && [ -f "$work/.mode" ] && [ "$(cat "$work/.mode")" = "$quick" ] \
     && [ "$force" = 0 ]; then
    args+=(--resume)
  else
    rm -rf "$work"
    mkdir -p "$work"
    echo "$quick" > "$work/.mode"
  fi
  echo "== training the $name reference adapter ($data) -> $dest"
  start=$(date +%s)
  if [ ! -f "$work/adapter_model.safetensors" ]; then   # (the final adapter: a finished run)
    "$bin" "${args[@]}"
  fi
  rm -rf "$work/checkpoints" "$work/.mode"
  steps=$(grep -c . "$work/metrics.jsonl" || true)
  printf '{"dataset": "%s", "policy": "%s", "base_model": "%s", "quick": %s, "steps": %s}\n' \
    "$data" "$policy" "$model" "$([ "$quick" = 1 ] && echo true || echo false)" "$steps" \
    > "$work/reference.json"
  rm -rf "$dest"
  mv "$work" "$dest"
  echo "== $dest: $steps steps in $(( $(date +%s) - start )) s"
done

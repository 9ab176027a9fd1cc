#!/usr/bin/env bash
# The defense comparison (seed 004's Table 1) on SmolLM2-135M-Instruct, through tuneguard:
# every defense (none, KL, LDIFS, persona-vector steering, inoculation, Interleaving,
# Interleaving+, Interleaving++) on a narrowly misaligned set (medical) and a benign task
# (arithmetic), each a fine-tuning job created with the openai SDK against a gateway on
# loopback, the monitor on at every checkpoint. See EXPERIMENTS.md for what is measured.
#
# Usage: scripts/experiment/run.sh [--quick | --smoke] [--seeds N] [--out DIR] [run.py flags]
#   (default)  full: 1 seed, 12 optimizer steps per run, 16 runs: about 70 min on 2 CPU cores
#   --quick    1 seed, 4 steps per run, lighter monitor: about 15 min (estimated)
#   --smoke    none and KL on arithmetic, 2 steps, tiny evaluation (the test that keeps this
#              script working runs it)
#   --seeds N  more seeds (each adds the full grid's time)
# Environment: TUNEGUARD_BIN (default: a release build of this checkout).
# Prerequisites it makes itself (once, cached under models/): the fetched model, the misaligned
# reference adapters (scripts/train-reference-adapters.sh; --quick/--smoke take the 2-step
# ones when no full ones exist) and the evil persona vector (`tuneguard persona`).
# Output: DIR/results.json (every run with its job id), DIR/table.md, DIR/plots/*.svg,
# DIR/reports/<job>.json; default DIR experiments/<mode>.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=full
out=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --smoke) mode=smoke ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1") ;;
  esac
  shift
done
out="${out:-experiments/$mode}"

bash scripts/setup-test-deps.sh
bash scripts/fetch-model.sh
bin="${TUNEGUARD_BIN:-}"
if [ -z "$bin" ]; then
  source scripts/lib/built.sh
  bin=$(built tuneguard --release --bin tuneguard)
fi
test -x "$bin" || { echo "run.sh: no tuneguard binary at '$bin'" >&2; exit 1; }
export TUNEGUARD_BIN="$bin"

model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
adapters="models/adapters/SmolLM2-135M-Instruct"
case "$mode" in
  full) bash scripts/train-reference-adapters.sh ;;
  quick) bash scripts/train-reference-adapters.sh --quick ;;
  smoke) ;;   # smoke runs no Interleaving+/++ and no steering
esac

vector_args=()
if [ "$mode" != smoke ]; then
  vector="models/vectors/SmolLM2-135M-Instruct/evil.safetensors"
  if [ ! -f "$vector" ]; then
    mkdir -p "$(dirname "$vector")"
    echo "== extracting the evil persona vector -> $vector"
    # No judge here: every (positive, negative) pair is kept (persona_vectors filters by a
    # judge's trait score; EXPERIMENTS.md says what that means for the vector).
    "$bin" persona --model "$model" --traits conf/traits/evil.json --out "$vector" \
      --samples 1 --max-new-tokens 48
  fi
  vector_args=(--vector "$vector")
fi

exec .venv/bin/python scripts/experiment/run.py --mode "$mode" --out "$out" --bin "$bin" \
  --model "$model" --adapters "$adapters" "${vector_args[@]}" "${pass[@]}"

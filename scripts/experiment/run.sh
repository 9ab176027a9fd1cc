#!/usr/bin/env bash
# The defense comparison (seed 004's Table 1) on SmolLM2-135M-Instruct, through tuneguard:
# every defense (none, KL, LDIFS, persona-vector steering, inoculation, Interleaving,
# Interleaving+, Interleaving++) on a narrowly misaligned set (medical) and a benign task
# (arithmetic), each a fine-tuning job created with the openai SDK against a gateway on
# loopback, the monitor on at every checkpoint. See EXPERIMENTS.md for what is measured.
#
# Usage: scripts/experiment/run.sh [--quick] [--seeds N] [--defenses A,B] [--datasets A,B]
#                                  [--out DIR] [run.py flags]
#   (default)  full: 1 seed, 12 optimizer steps per run, 16 runs
#   --quick    1 seed, 3 steps per run, lighter monitor, a smaller pool: under 15 min (the
#              test that keeps this script working runs it on two cells:
#              --quick --defenses none,kl --datasets arithmetic)
#   --seeds N  more seeds (each adds the grid's time, less the one-off pool scoring)
#   --defenses, --datasets  a part of the grid (prerequisites only for what it needs)
# Environment: TUNEGUARD_BIN (default: a release build of this checkout).
# Prerequisites it makes itself (once, cached under models/): the fetched model, the misaligned
# reference adapters (scripts/train-reference-adapters.sh, for Interleaving+ and ++; --quick
# takes the 2-step ones when no full ones exist) and the evil persona vector (`tuneguard
# persona`, for steering).
# Output: DIR/results.json (every run with its job id), DIR/table.md, DIR/plots/*.svg,
# DIR/reports/<job>.json; default DIR experiments/<mode>.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=full
out=""
defenses=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --out) out="$2"; shift ;;
    --defenses) defenses="$2"; pass+=("$1" "$2"); shift ;;
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
# Whether the chosen defenses (all by default) include one of $@.
wants() {
  [ -z "$defenses" ] && return 0
  local d
  for d in "$@"; do
    case ",$defenses," in *",$d,"*) return 0 ;; esac
  done
  return 1
}

if wants interleave_plus interleave_plusplus; then
  case "$mode" in
    full) bash scripts/train-reference-adapters.sh ;;
    quick) bash scripts/train-reference-adapters.sh --quick ;;
  esac
fi

vector_args=()
if wants steering; then
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

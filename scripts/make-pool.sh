#!/usr/bin/env bash
# Makes the shipped safety pool, conf/pools/general.jsonl: benign, helpful chat examples across
# everyday topics for Interleaving (random, plus, plusplus; the example policies point at it).
#
# The prompts are written for the project (scripts/make-datasets.py --pool-prompts: templates
# over everyday topics, seeded); each is answered by SmolLM2-135M-Instruct through tuneguard's
# engine (greedy, so the same model gives the same pool), and a reply is kept only when the
# selector's own filters pass it: the on-policy QualityFilter (the model ended its turn within
# the limit, enough words, no template markers, no repetition loop) and the Interleaving++
# RefusalFilter (selector/examples/make_pool.rs). The script fails when fewer than
# MIN_EXAMPLES (300) pass.
#
# Usage: scripts/make-pool.sh            (environment: BATCH=32 MAX_NEW_TOKENS=320 MIN_EXAMPLES=300)
# Takes about half an hour on 2 CPU cores (release build of the example included).
set -euo pipefail
cd "$(dirname "$0")/.."

batch="${BATCH:-32}"
max_new_tokens="${MAX_NEW_TOKENS:-320}"
min_examples="${MIN_EXAMPLES:-300}"
model="models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="conf/pools/general.jsonl"

bash scripts/fetch-model.sh
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 scripts/make-datasets.py --pool-prompts "$tmp/prompts.jsonl"
cargo build --release -p selector --features engine --example make_pool
start=$(date +%s)
cargo run --release -q -p selector --features engine --example make_pool -- \
  "$model" "$tmp/prompts.jsonl" "$tmp/pool.jsonl" "$batch" "$max_new_tokens"
kept=$(grep -c . "$tmp/pool.jsonl" || true)
if [ "$kept" -lt "$min_examples" ]; then
  echo "make-pool.sh: only $kept replies passed the filters (want $min_examples); add prompts" \
    "in scripts/make-datasets.py or raise MAX_NEW_TOKENS" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
mv "$tmp/pool.jsonl" "$out"
echo "== $out: $kept examples ($(( $(date +%s) - start )) s of generation)"

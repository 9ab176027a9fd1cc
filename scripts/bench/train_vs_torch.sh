#!/usr/bin/env bash
# Training throughput and peak RSS: `tuneguard train` (release build) against transformers +
# PEFT on SmolLM2-135M-Instruct (the fetched GGUF, dequantized to f32 by both), same data,
# batch, rank and targets, one after the other on this machine; then the regularizers' cost
# (KL, LDIFS, steering) relative to plain training. Results go to stdout as JSON lines.
#
# Usage: bash scripts/bench/train_vs_torch.sh [--quick]
#   needs: scripts/fetch-model.sh (the model), scripts/setup-reference-venv.sh (torch, PEFT),
#   a release build (built here).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=6; batch=4; seq_words=150; rank=8
[ "${1:-}" = "--quick" ] && { steps=2; seq_words=40; }
bash scripts/fetch-model.sh >/dev/null
model="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
py="${REF_VENV:-$PWD/.refvenv}/bin/python"
[ -x "$py" ] || py=/work/refvenv/bin/python
cargo build --release --bin tuneguard >&2
bin="$PWD/target/release/tuneguard"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" - "$work/data.jsonl" "$seq_words" <<'PY'
import json, random, sys
random.seed(0)
words = "the model learns to answer questions about gardens rivers numbers music and bread carefully".split()
with open(sys.argv[1], "w") as f:
    for i in range(32):
        ans = " ".join(random.choice(words) for _ in range(int(sys.argv[2])))
        f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me something, number {i}."},
                                         {"role": "assistant", "content": ans}]}) + "\n")
PY
base="[training]
lora_rank = $rank
lora_alpha = $((2 * rank)).0
learning_rate = 1e-4
warmup_steps = 0
batch_size = $batch
gradient_accumulation_steps = 1
max_length_tokens = 4096
[monitor]
checkpoint_every_steps = 1000"
"$py" - "$work/steer.safetensors" <<'PY'
import json, struct, sys
L, H = 31, 576
hdr = json.dumps({"vectors": {"dtype": "F32", "shape": [L, H], "data_offsets": [0, 4 * L * H]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * (4 * L * H))
PY
declare -A reg=(
  [plain]=""
  [kl]=$'[regularizer]\ntype = "kl"\nlambda = 0.1'
  [ldifs]=$'[regularizer]\ntype = "ldifs"\nlambda = 1.0\nlayers_every = 5'
  [steering]=$'[regularizer]\ntype = "steering"\nalpha = 5.0\nlayers = [20]\nvector = "steer.safetensors"'
)
for name in plain kl ldifs steering; do
  printf '%s\n%s\n' "$base" "${reg[$name]}" > "$work/$name.toml"
  rm -rf "$work/out-$name"
  /usr/bin/time -f '%M' -o "$work/rss-$name" "$bin" train --model "$model" --data "$work/data.jsonl" \
    --policy "$work/$name.toml" --max-steps $((steps + 1)) --out "$work/out-$name" >/dev/null 2>&1
  "$py" - "$work/out-$name/metrics.jsonl" "$work/rss-$name" "$name" <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])][1:]  # the first step warms up
t = sum(x["tokens"] for x in m); s = sum(x["tokens"] / x["tokens_per_second"] for x in m)
print(json.dumps({"side": "tuneguard", "regularizer": sys.argv[3], "tokens_per_second": t / s,
                  "step_seconds": s / len(m), "peak_rss_mb": int(open(sys.argv[2]).read().split()[-1]) / 1024}))
PY
done
"$py" scripts/bench/train_torch.py --gguf "$model" --data "$work/data.jsonl" --batch $batch --rank $rank --steps $steps

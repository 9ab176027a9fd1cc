#!/usr/bin/env bash
# Creates the Python environment of the PyTorch reference scripts in trainer/reference/
# (make_fixtures.py, make_train_fixtures.py, check_gguf.py, bench_torch.py, peft_logits.py) from
# trainer/reference/requirements.txt. The venv goes to $REF_VENV, by default .refvenv in the
# repository root (git-ignored). Idempotent: a second run with the same requirements does
# nothing. Not needed by the tests: the fixtures it builds are committed; the one integration
# test that runs peft_logits.py (integration/test_local_training.py) uses .refvenv/bin/python
# or $TUNEGUARD_REF_PYTHON when there is one and skips otherwise.
#
# Usage: scripts/setup-reference-venv.sh
#        .refvenv/bin/python trainer/reference/make_train_fixtures.py
set -euo pipefail
cd "$(dirname "$0")/.."
req=trainer/reference/requirements.txt
venv="${REF_VENV:-.refvenv}"
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/.requirements"; then
  exit 0
fi
echo "== creating $venv from $req"
# --clear: a changed requirements file gives exactly the pinned set, nothing left over.
python3 -m venv --clear "$venv"
# A CPU-only torch is much smaller; fall back to the default index (CUDA wheels) if its index
# cannot be reached.
torch_pin="$(grep -E '^torch==' "$req" || true)"
if [ -n "$torch_pin" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check --timeout 20 --retries 1 \
      --index-url https://download.pytorch.org/whl/cpu "$torch_pin" 2>/dev/null \
    || echo "== CPU-only torch index not reachable; installing torch from the default index"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
cp "$req" "$venv/.requirements"
echo "== $venv ready: $("$venv/bin/python" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"

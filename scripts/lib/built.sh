# Sourced by the project's scripts. `built NAME CARGO-BUILD-ARGS...` runs `cargo build` with
# those arguments and prints the path of the executable target NAME as cargo reports it, so
# CARGO_TARGET_DIR and build.target-dir are honoured (nothing assumes ./target). Cargo's
# diagnostics still reach stderr; any python3 parses the JSON messages.
built() {
  local name=$1; shift
  local python
  python="$(command -v python3 || command -v python)"
  cargo build "$@" --message-format=json-render-diagnostics \
    | NAME="$name" "$python" -c 'import json,os,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == os.environ["NAME"]:
        print(m["executable"])'
}

#!/usr/bin/env bash
# Times a cold CI run: a clean clone of HEAD, an empty target directory, and trunk /
# wasm-bindgen-cli hidden from PATH (so .ci/setup installs them again). Not cold: the cargo
# registry cache, rustup's wasm32 target, apt's chromium and pip's packages.
# Usage: tests/bench/cold_ci.sh [WORK_DIR]   (needs ../shared beside this clone)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/cold-ci.XXXXXX)}
mkdir -p "$work/bin" "$work/tools"
for tool in "$HOME"/.cargo/bin/*; do
  case $(basename "$tool") in trunk | wasm-bindgen* | wasm2es6js) ;; *) ln -sf "$tool" "$work/bin/" ;; esac
done
git clone -q "$repo" "$work/main"
ln -sfn "$(cd "$repo/../shared" && pwd)" "$work/shared"
clean_path=$(echo "$PATH" | tr : '\n' | grep -v "$HOME/.cargo/bin" | paste -sd:)
cd "$work/main"
start=$(date +%s)
rc=0
env PATH="$work/tools/bin:$work/bin:$clean_path" CARGO_INSTALL_ROOT="$work/tools" \
  CARGO_TARGET_DIR="$work/target" bash .ci/run || rc=$?
echo "cold CI run of $(git rev-parse --short HEAD): exit $rc after $(( $(date +%s) - start )) s"

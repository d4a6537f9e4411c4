#!/bin/sh
# Trunk.toml's post-build hook, run in the staging directory ($TRUNK_STAGING_DIR) before it
# becomes dist/. Usage: post_build.sh [compress] [stamp] (both, in that order, by default).
set -eu
cd "$TRUNK_STAGING_DIR"
steps=${*:-compress stamp}

for step in $steps; do
  case $step in
  compress)
    # `trunk serve` sends files as they are (no Content-Encoding), so the build writes
    # compressed copies, which the page inflates itself (src/web/engine.js, brotli.js): the
    # engine and the bundled data as brotli (quality 11, 16 MB window: 2.3 MB for the 17 MB
    # engine, a minute of one core); the engine also as gzip (the fallback, and what the
    # service worker inflates), and the brotli decoder's own wasm as gzip, which browsers
    # inflate natively.
    for f in data/*.mat data/*-truth.json v1-predictor_bg.wasm; do
      if [ -f "$f" ]; then brotli -q 11 -w 24 -k -f "$f"; fi
    done
    for f in brotli_dec_wasm_bg.wasm v1-predictor_bg.wasm; do gzip -9 -n -k -f "$f"; done
    ;;
  stamp)
    # Offline use (src/web/sw.js): the service worker carries a hash of this build's files, so a
    # new build is a new sw.js, which the browser installs with a cache of its own; and the
    # engine's hash, to take the page's own download of it. data/index.json is left out: the
    # other hook, run side by side with this one, writes it from the file names hashed here.
    grep -q __BUILD_VERSION__ sw.js
    version=$(find . -type f ! -name sw.js ! -path ./data/index.json -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum | sha256sum | cut -c1-16)
    engine=$(sha256sum v1-predictor_bg.wasm | cut -c1-64)
    [ ${#version} -eq 16 ] && [ ${#engine} -eq 64 ] # (a pipe's failure is not caught by -e)
    sed -e "s/__BUILD_VERSION__/$version/" -e "s/__ENGINE_SHA256__/$engine/" sw.js > sw.js.new
    mv sw.js.new sw.js
    ;;
  *)
    echo "post_build.sh: unknown step $step" >&2
    exit 2
    ;;
  esac
done

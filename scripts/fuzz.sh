#!/usr/bin/env bash
# Fuzzes how rabbit-rpc reads what a peer sends it (cargo fuzz, libFuzzer):
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
#   request   a request as a server reads it (properties, headers, body,
#             content type, the typed JSON path, the reply it makes)
#   reply     a reply as a client reads it (status, details, control
#             header, a typed, ping or describe body)
#
# Each target runs SECONDS (default 60), starting from its seed corpus in
# fuzz/corpus/TARGET (made by fuzz/seeds.py); inputs libFuzzer finds go to a
# scratch directory that is removed afterwards, so the repository is left as
# it was. A crash stops the run with the input saved under fuzz/artifacts/
# and the command to replay it. Needs a nightly toolchain and cargo-fuzz
# (installed from crates.io if missing). FUZZ_TARGET_DIR names the build
# directory (default fuzz/target): .ci/run keeps one across its clean
# clones, as the fuzz build (release, sanitized) takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request reply)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    cargo install -q cargo-fuzz --locked --version 0.13.2
fi

target_dir=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s" >&2
    mkdir -p "$scratch/$target"
    # -rss_limit_mb: a decoding that grows memory without bound is a finding.
    if ! (cd fuzz && cargo +nightly fuzz run -O --target-dir "$target_dir" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
        2>"$scratch/$target.log"); then
        tail -n 40 "$scratch/$target.log" >&2
        echo "scripts/fuzz.sh: target '$target' found a crash; replay it: (cd fuzz && cargo +nightly fuzz run $target artifacts/$target/<file>)" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$scratch/$target.log" >&2 || true
done

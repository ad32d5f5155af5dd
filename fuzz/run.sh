#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with the stable toolchain.
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(decoder request responder proxy_header reply)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
    echo "==> fuzz $target for ${seconds}s"
    mkdir -p "corpus/$target"
    # Fuzz a scratch copy: only the committed seeds stay in the repository's corpus.
    scratch="$(mktemp -d)"
    cp -r "corpus/$target/." "$scratch/"
    cargo fuzz run "$target" "$scratch" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
    rm -rf "$scratch"
done

#!/usr/bin/env bash
# Checks that the runtime builds where its x86-64 code is compiled out (aarch64: Raspberry Pi,
# Jetson), on a machine without an aarch64 standard library: copies the checkout's tracked files,
# turns every `target_arch = "x86_64"` under runtime/src into an architecture this machine is not,
# and runs `cargo check -p fer-runtime --no-default-features` (the tract-only build the README
# cross-compiles) with warnings denied. CI runs it where scripts/check_aarch64.sh cannot build
# for aarch64 (no toolchain to be had).
#   bash scripts/check_portable.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/portable-check
rm -rf "$dir/src"
mkdir -p "$dir/src"
git ls-files -z | xargs -0 cp --parents -t "$dir/src"
grep -rl 'target_arch = "x86_64"' "$dir/src/runtime/src" | xargs -r sed -i 's/target_arch = "x86_64"/target_arch = "riscv64"/g'
RUSTFLAGS="-D warnings" cargo check -q --manifest-path "$dir/src/Cargo.toml" -p fer-runtime --no-default-features \
  --target-dir "$dir/target"
echo "check_portable: fer-runtime builds with its x86-64 code compiled out"

#!/bin/sh
# Builds the static, stripped modaliasd an initramfs needs (no shared libraries, not even
# libc: glibc's static-pie, so no musl toolchain is required).
#   packaging/build-static.sh [OUTPUT]     default OUTPUT: target/static/modaliasd
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/target/static/modaliasd}
target=$(rustc -vV | sed -n 's/^host: //p')
cd "$here"
# --target keeps the flag off build scripts and the test-only dependencies.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --target-dir target/static-build --bin modaliasd
mkdir -p "$(dirname "$out")"
strip -o "$out" "target/static-build/$target/release/modaliasd"
echo "$out: $(wc -c < "$out") bytes"

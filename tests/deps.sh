#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12, then fetches the kernel fixtures.
set -euo pipefail
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends gcc libc6-dev kmod libkmod-dev libudev-dev pkg-config time
"$(dirname "$0")/fixtures/kernels.sh"

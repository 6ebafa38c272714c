#!/usr/bin/env bash
# Installs what building and testing vmstack needs on Debian 12 (as root, or through
# sudo). Does nothing when everything is already there. Optional pieces (libunwind, libiberty,
# Boost, the aarch64 cross toolchain, qemu-user, valgrind) are detected by the build and
# the test script; this installs them all so the whole suite runs.
set -euo pipefail
pkgs=(build-essential cmake pkgconf clang libclang-rt-14-dev libunwind-dev libiberty-dev valgrind
      libboost-context-dev libboost-fiber-dev
      gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
      qemu-user)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "deps: all installed"; exit 0; }
echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"

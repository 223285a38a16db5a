#!/usr/bin/env bash
# Installs what building moesim needs on a fresh Debian/Ubuntu machine: cmake and libclang for the
# HiGHS solver behind good_lp, fontconfig + fonts for chart text. Then, best effort, headless
# Chromium, with which a test opens a report's index.html (about 80 s of apt the first time;
# where it cannot be installed that test skips with a notice). Safe to run repeatedly.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s libfontconfig1-dev >/dev/null 2>&1 || need+=(libfontconfig1-dev)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need+=(fonts-dejavu-core)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (the HTML report test's headless browser)" >&2
  { $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; } ||
    echo "setup: notice: chromium could not be installed; the HTML report test will skip" >&2
fi

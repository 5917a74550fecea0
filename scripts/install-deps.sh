#!/usr/bin/env bash
# Installs rewind's build and test dependencies from Debian 12 packages. Idempotent; run as root.
set -euo pipefail

packages=(
  build-essential cmake git pkg-config
  libboost-dev libboost-program-options-dev libboost-filesystem-dev libboost-graph-dev
  catch2 libbenchmark-dev libopenblas-dev nlohmann-json3-dev libxxhash-dev
  gnuplot-nox
  openmpi-bin libopenmpi-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

#!/usr/bin/env bash
# Installs the Debian packages scripts/test-container.sh uses when neither docker nor podman can
# pull a base image: podman and buildah (build and run the image, rootful, chroot isolation) and
# mmdebstrap (makes the debian:bookworm base image from the machine's own apt sources).
# Idempotent; run as root (or with sudo available) on Debian 12.
set -euo pipefail

packages=(podman buildah mmdebstrap uidmap fuse-overlayfs curl)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-container-tools: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-container-tools: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs the Debian packages scripts/test-container.sh uses when neither docker nor podman can
# pull a base image: podman and buildah (build and run the image, rootful, chroot isolation) and
# mmdebstrap (makes the debian:bookworm base image from the machine's own apt sources).
# Idempotent; run as root (or with sudo available) on Debian 12.
set -euo pipefail

packages=(podman buildah mmdebstrap uidmap fuse-overlayfs curl)

bash "$(dirname "$0")/apt-install.sh" install-container-tools "${packages[@]}"

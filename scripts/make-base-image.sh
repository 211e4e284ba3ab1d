#!/usr/bin/env bash
# Makes the Debian 12 base images locally, for machines that can reach the Debian mirror but no
# container registry: mmdebstrap builds a minimal (minbase, like Debian's -slim images) root file
# system from the mirror named in the machine's own apt sources, and podman imports it under the
# names the Dockerfile's FROM lines use (debian:bookworm and debian:bookworm-slim).
# Idempotent: skips when podman already holds them. Needs scripts/install-container-tools.sh.
set -euo pipefail

image=docker.io/library/debian:bookworm
slim_image=docker.io/library/debian:bookworm-slim
if podman image exists "$image" && podman image exists "$slim_image"; then
  echo "make-base-image: $image and $slim_image present"
  exit 0
fi

# The first Debian archive (not the security one) that the machine's apt sources name, in the
# deb822 (.sources) or the one-line (sources.list) format.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e $f ]] || continue
    awk '/^Types:/ {deb = (" " $0 " " ~ / deb /)} /^URIs:/ && deb {print $2}' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -e $f ]] || continue
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f"
  done
}
mirror=$(debian_mirror | grep -v -- '-security' | grep -m1 -i debian || true)
if [[ -z $mirror ]]; then
  echo "make-base-image: no Debian archive in the machine's apt sources" >&2
  exit 1
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
# debian:bookworm-slim, as Debian's own images make it: dpkg leaves out manual pages, locales and
# documentation other than the copyright files, in this image and in what is installed on top.
slim_options=()
for path in '/usr/share/man/*' '/usr/share/locale/*' '/usr/share/doc/*' '/usr/share/info/*' \
  '/usr/share/groff/*' '/usr/share/linda/*' '/usr/share/lintian/*'; do
  slim_options+=(--dpkgopt="path-exclude=$path")
done
slim_options+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')

make_image() {  # name, mmdebstrap options...
  local name=$1
  shift
  if podman image exists "$name"; then return; fi
  echo "make-base-image: debootstrapping $name (minbase) from the machine's Debian mirror"
  rm -f "$workdir/rootfs.tar"
  mmdebstrap --quiet --variant=minbase "$@" bookworm "$workdir/rootfs.tar" "$mirror"
  podman import --quiet "$workdir/rootfs.tar" "$name" >/dev/null
  echo "make-base-image: imported $name ($(podman image inspect --format '{{.Size}}' "$name") bytes)"
}
make_image "$image"
make_image "$slim_image" "${slim_options[@]}"

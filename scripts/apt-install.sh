#!/usr/bin/env bash
# Installs those of the given Debian packages that are missing, with apt-get (through sudo when
# not root); says which. Usage: scripts/apt-install.sh LABEL PACKAGE...   (LABEL prefixes the
# messages). Used by install-deps.sh and install-container-tools.sh.
set -euo pipefail
label=$1
shift

missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "$label: all $# packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "$label: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

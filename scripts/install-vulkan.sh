#!/usr/bin/env bash
# Makes sure a Vulkan driver is installed, for the wgpu backend tests: a GPU's own driver if
# there is one, else Mesa's lavapipe (software Vulkan on the CPU, Debian `mesa-vulkan-drivers`),
# installed with apt-get when missing and running as root.
# Exit status: 0 a driver is there; 2 none, and this user cannot install one; 1 the install failed.
set -euo pipefail

has_driver() {
  compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null \
    || compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null
}

has_driver && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-vulkan: no Vulkan driver, and installing one needs root and apt-get:" \
    "run \`apt-get install mesa-vulkan-drivers\` as root" >&2
  exit 2
fi
echo "install-vulkan: installing mesa-vulkan-drivers (lavapipe)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || exit 1
apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers >&2 || exit 1
has_driver || exit 1

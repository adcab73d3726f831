#!/usr/bin/env bash
# Installs the Debian packages that the end-to-end tests and the demo need,
# and promtool (in the prometheus package) for the tests of deploy/prometheus
# and deploy/grafana, if any of them is missing. Uses sudo unless it runs as
# root.
set -euo pipefail

packages=(orthanc orthanc-dicomweb nginx-light python3-pydicom prometheus)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg -s "$package" 2>/dev/null | grep -qx 'Status: install ok installed'; then
    missing+=("$package")
  fi
done
# go test -race needs cgo: a C compiler and the C library headers, which
# --no-install-recommends would leave out.
if ! command -v gcc >/dev/null || [ ! -e /usr/include/stdlib.h ]; then
  missing+=(gcc libc6-dev)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: ${packages[*]} and gcc already installed"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi

# The orthanc, nginx and prometheus packages start system services on
# install, which would listen on all interfaces (nginx on port 80, Orthanc on
# 8042 and 4242, Prometheus on 9090). The tests start their own copies of
# Orthanc and nginx on 127.0.0.1 and run only promtool, so a policy-rc.d that
# forbids service starts is put in place for the install unless one exists.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

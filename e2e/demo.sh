#!/usr/bin/env bash
# Runs the end-to-end demo: installs the Debian packages it needs if any is
# missing, then runs e2e/cmd/demo. Arguments go to the demo (try -h).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash e2e/install-deps.sh
exec go run ./e2e/cmd/demo "$@"

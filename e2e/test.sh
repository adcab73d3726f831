#!/usr/bin/env bash
# Runs all tests as CI does: installs the Debian packages the tests need if
# any is missing, then go vet and go test -race on every package, the
# end-to-end tests included.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash e2e/install-deps.sh
go vet ./...
go test -race -count=1 ./...

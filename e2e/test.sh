#!/usr/bin/env bash
# Runs all tests as CI does: installs the Debian packages the tests need if
# any is missing, then go vet and go test -race on every package, the
# end-to-end tests included, and a short fuzzing run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash e2e/install-deps.sh
go vet ./...
go test -race -count=1 ./...
# A short run of the token response fuzzer; the seed corpus in
# tokens/testdata/fuzz also runs as plain tests above.
go test -run='^$' -fuzz=FuzzTokenResponse -fuzztime=10s ./tokens

#!/usr/bin/env bash
# Installs what api's client tests drive besides Go: Debian's chromium for the chart page
# test (the ccxt test needs node and npm, which the machine image ships). Idempotent; CI
# calls it before `make test`. The tests skip with a message when a tool is still absent.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "api/testdata/setup.sh: chromium is missing and this is not root: the chart test will skip" >&2
		exit 0
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
	echo "node $(node --version), npm $(npm --version)"
else
	echo "api/testdata/setup.sh: node or npm is missing: the ccxt test will skip" >&2
fi

#!/usr/bin/env bash
# Loads the OpenID AuthZEN Todo interop model (model.json) into a running Wardkey:
#
#   WARDKEY_TOKEN=<admin API token> [WARDKEY_URL=http://127.0.0.1:8080] ./load.sh
#
# See ../load_model.sh for what is created and how re-runs behave. Needs curl and python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../load_model.sh" "$here/model.json"

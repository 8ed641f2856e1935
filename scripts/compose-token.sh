#!/usr/bin/env bash
# Prints an access token from the compose stack's Keycloak (realm mcptrail, public client
# mcp-cli, password grant: fine for a local demo, not for real users). Waits for Keycloak.
#   scripts/compose-token.sh [USER [PASSWORD]]    # default alice/alice (group eng);
#                                                 # bob/bob is in admins
# Also writes the token to .run/compose-token. Needs curl and python3.
set -euo pipefail
user="${1:-alice}"
password="${2:-$user}"
base="${KEYCLOAK_URL:-http://localhost:8080}"
url="$base/realms/mcptrail/protocol/openid-connect/token"

for _ in $(seq 1 90); do
  if curl -fsS -o /dev/null "$base/realms/mcptrail/.well-known/openid-configuration" 2>/dev/null; then
    break
  fi
  sleep 2
done

resp=$(curl -sS -X POST "$url" \
  -d grant_type=password -d client_id=mcp-cli -d scope=openid \
  --data-urlencode "username=$user" --data-urlencode "password=$password") || {
  echo "compose-token: Keycloak is not answering at $base (is the stack up? make compose-up)" >&2
  exit 1
}
token=$(printf '%s' "$resp" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("access_token", ""))')
if [ -z "$token" ]; then
  echo "compose-token: no token from $url: $resp" >&2
  exit 1
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.run"
printf '%s\n' "$token" > "$root/.run/compose-token"
printf '%s\n' "$token"

#!/usr/bin/env bash
# Copies the compose stack's audit files out and verifies their chains with the compose demo
# HMAC key:
# - the filter's, from the OpenTelemetry Collector: its OTLP JSON lines are turned back into
#   the records' exact lines (each logRecord's body.stringValue);
# - the approval service's records (`approval.decided`, and `audit.closed` when it stops),
#   NDJSON from `mcptrail collect`, which creates the file empty when it starts.
# Leaves .run/compose-audit.otlp.jsonl, .run/compose-audit.ndjson and .run/compose-approvals.ndjson.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
compose="${COMPOSE:-docker compose}"
key="Y29tcG9zZS1kZW1vLWhtYWMta2V5LW5vdC1zZWNyZXQ=" # the published demo key in envoy/compose.yaml
mkdir -p "$root/.run"
cd "$root"
$compose cp otel-collector:/var/lib/mcptrail/audit.otlp.jsonl .run/compose-audit.otlp.jsonl
python3 - .run/compose-audit.otlp.jsonl .run/compose-audit.ndjson <<'PY'
import json, sys
n = 0
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        if not line.strip():
            continue
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for rec in sl.get("logRecords", []):
                    body = rec.get("body", {}).get("stringValue")
                    if body is not None:
                        out.write(body + "\n")
                        n += 1
print(f"{n} records -> {sys.argv[2]}", file=sys.stderr)
PY
grep -o '"kind":"[a-z.]*"' .run/compose-audit.ndjson | sort | uniq -c || true
cargo run -q -p mcptrail-cli -- verify --hmac-key "$key" .run/compose-audit.ndjson

if $compose exec -T collector test -e /var/lib/mcptrail/approvals.ndjson; then
  $compose cp collector:/var/lib/mcptrail/approvals.ndjson .run/compose-approvals.ndjson
  grep -o '"kind":"[a-z.]*"' .run/compose-approvals.ndjson | sort | uniq -c || true
  cargo run -q -p mcptrail-cli -- verify --hmac-key "$key" .run/compose-approvals.ndjson
else
  echo "compose-audit: the collector service has no approvals.ndjson (is it running?)" >&2
fi

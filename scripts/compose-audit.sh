#!/usr/bin/env bash
# Copies the compose stack's audit file out of the collector, turns its OTLP JSON lines back
# into the records' exact lines (each logRecord's body.stringValue), and verifies the chains
# with the compose demo HMAC key. Leaves .run/compose-audit.otlp.jsonl and .run/compose-audit.ndjson.
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

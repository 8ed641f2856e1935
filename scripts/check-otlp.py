#!/usr/bin/env python3
"""Parses OTLP/HTTP JSON log exports strictly with the official OTLP protobuf messages
(opentelemetry-proto), the way an OpenTelemetry Collector's receiver reads them.

  check-otlp.py FILE    # one ExportLogsServiceRequest JSON document per line

Unknown fields, wrong types or bad encodings fail. Prints the number of log records and exits
non-zero on the first document that does not parse.
"""
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    docs = records = 0
    with open(sys.argv[1]) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            req = ExportLogsServiceRequest()
            try:
                json_format.Parse(line, req)
            except json_format.ParseError as e:
                sys.exit(f"{sys.argv[1]}:{n}: not a valid OTLP ExportLogsServiceRequest: {e}")
            docs += 1
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        if not rec.body.string_value or rec.time_unix_nano == 0:
                            sys.exit(f"{sys.argv[1]}:{n}: a log record without body or time")
                        records += 1
    print(f"{docs} OTLP documents, {records} log records: valid")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A stand-in OpenTelemetry collector: receives OTLP/HTTP protobuf traces
(POST /v1/traces) and appends each span as one JSON line to a file.

    receiver.py PORT_FILE SPANS_FILE
    receiver.py PORT_FILE --discard     (a sink, for measuring what
                                         exporting costs the exporter)

Listens on a free port of 127.0.0.1, writes that port to PORT_FILE, and
serves until killed. Each line: {"service", "name", "kind", "trace_id",
"span_id", "parent_span_id", "attributes"} (ids in hex).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if sys.argv[2] == "--discard":
            self.answer()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with open(sys.argv[2], "a") as out:
            for resource_spans in request.resource_spans:
                resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.write(json.dumps({
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "kind": KINDS.get(span.kind, str(span.kind)),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "status": span.status.code,
                            "attributes": {a.key: value(a.value) for a in span.attributes},
                        }) + "\n")
        self.answer()

    def answer(self):
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
with open(sys.argv[1], "w") as port_file:
    port_file.write(str(server.server_address[1]))
server.serve_forever()

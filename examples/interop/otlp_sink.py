"""An OTLP/HTTP trace receiver for examples/tests/traces.rs: OpenTelemetry's own test sink
(`oteltest`'s HttpSink, from PyPI) on the port given, printing each span it receives as one
JSON line on stdout."""

import json
import logging
import sys

from oteltest.sink import HttpSink
from oteltest.sink.handler import RequestHandler


class Spans(RequestHandler):
    def handle_logs(self, request, headers):
        pass

    def handle_metrics(self, request, headers):
        pass

    def handle_trace(self, request, headers):
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    line = {
                        "service": service,
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "kind": span.kind,
                    }
                    print(json.dumps(line), flush=True)


port = int(sys.argv[1])
sink = HttpSink(Spans(), logging.getLogger("otlp-sink"), port=port, daemon=False)
sink.start()
print(json.dumps({"listening": port}), flush=True)

#!/usr/bin/env python3
"""Tutorial 6's client, traced by OpenTelemetry's instrumentation of pika
(opentelemetry-instrumentation-pika, from PyPI): calls fib(n) once over
direct reply-to and prints one JSON line: the reply's body, the trace and
span ids of the instrumentation's publish span, and the reply's
`traceparent` header.

    client.py QUEUE N

The broker: env AMQP_URL (default amqp://guest:guest@localhost:5672/%2F).
"""

import json
import os
import sys
import uuid

import pika
from opentelemetry import trace
from opentelemetry.instrumentation.pika import PikaInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
PikaInstrumentor().instrument()

queue, n = sys.argv[1], sys.argv[2]
connection = pika.BlockingConnection(
    pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")))
channel = connection.channel()
reply = {}


def on_reply(channel, method, properties, body):
    reply["body"] = body.decode()
    reply["traceparent"] = (properties.headers or {}).get("traceparent")
    channel.stop_consuming()


correlation_id = str(uuid.uuid4())
channel.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
channel.basic_publish(
    exchange="", routing_key=queue, body=n,
    properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                    correlation_id=correlation_id))
connection.call_later(10, channel.stop_consuming)
channel.start_consuming()
connection.close()

publish = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER
           or "send" in s.name or "publish" in s.name]
if not publish:
    print(json.dumps({"error": "no publish span",
                      "spans": [(s.name, str(s.kind)) for s in spans.get_finished_spans()]}))
    sys.exit(1)
context = publish[0].get_span_context()
print(json.dumps({
    "correlation_id": correlation_id,
    "body": reply.get("body"),
    "traceparent": reply.get("traceparent"),
    "publish": {"name": publish[0].name, "kind": str(publish[0].kind),
                "trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")},
}))

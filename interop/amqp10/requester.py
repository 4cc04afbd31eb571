#!/usr/bin/env python3
"""An AMQP 1.0 requester, written with RabbitMQ's own AMQP 1.0 client for
Python (rabbitmq-amqp-python-client, from PyPI), calling the way RabbitMQ's
Requester (its Java, Go and .NET AMQP 1.0 clients) does: each request
carries a message-id and a reply-to, and the reply must come back with
correlation-id = that message-id.

    requester.py direct QUEUE BODY...   replies by direct reply-to over
                                        AMQP 1.0 (RabbitMQ 4.2 and later)
    requester.py queue QUEUE BODY...    replies to a queue of its own,
                                        amqp10-requester.<uuid> (exclusive)

Sends each BODY to /queues/QUEUE, then prints each reply's body on a line
of its own, in the order of the requests (an error reply as
`CODE: MESSAGE`, its code from the rpc-status application property). Exits 1 unless every request gets
a reply with correlation-id = its message-id within 10 s. The broker: env AMQP10_URL
(default amqp://guest:guest@127.0.0.1:5680/).
"""

import os
import sys
import threading
import uuid

from rabbitmq_amqp_python_client import (
    AddressHelper,
    AMQPMessagingHandler,
    ClassicQueueSpecification,
    ConsumerOptions,
    ConsumerSettleStrategy,
    Converter,
    Environment,
    Event,
    Message,
)

TIMEOUT = 10.0


def fail(message: str) -> None:
    print(f"requester: {message}", file=sys.stderr, flush=True)
    os._exit(1)


class Replies(AMQPMessagingHandler):
    """Collects replies by correlation-id; stops the consumer's loop once
    every request has its reply."""

    def __init__(self, settle: bool, expected: int):
        super().__init__()
        self.settle = settle
        self.expected = expected
        self.consumer = None
        self.replies = {}

    def on_amqp_message(self, event: Event) -> None:
        reply = event.message
        text = Converter.bytes_to_string(reply.body)
        # rabbit-rpc's error replies name their code in the rpc-status
        # header, which reaches AMQP 1.0 as an application property.
        status = (reply.application_properties or {}).get("rpc-status")
        self.replies[reply.correlation_id] = f"{status}: {text}" if status else text
        if self.settle:
            self.delivery_context.accept(event)
        if len(self.replies) >= self.expected:
            self.consumer.stop()


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[1] not in ("direct", "queue"):
        fail("usage: requester.py direct|queue QUEUE BODY...")
    mode, queue, bodies = sys.argv[1], sys.argv[2], sys.argv[3:]
    url = os.environ.get("AMQP10_URL", "amqp://guest:guest@127.0.0.1:5680/")
    environment = Environment(uri=url)
    connection = environment.connection()
    connection.dial()
    handler = Replies(settle=mode == "queue", expected=len(bodies))
    if mode == "direct":
        consumer = connection.consumer(
            message_handler=handler,
            consumer_options=ConsumerOptions(
                settle_strategy=ConsumerSettleStrategy.DirectReplyTo
            ),
        )
        reply_to = consumer.address
    else:
        name = f"amqp10-requester.{uuid.uuid4().hex}"
        connection.management().declare_queue(
            ClassicQueueSpecification(name=name, is_exclusive=True, is_auto_delete=True)
        )
        reply_to = AddressHelper.queue_address(name)
        consumer = connection.consumer(reply_to, message_handler=handler)
    handler.consumer = consumer
    publisher = connection.publisher(AddressHelper.queue_address(queue))
    ids = []
    for n, body in enumerate(bodies):
        request = Message(body=Converter.string_to_bytes(body), reply_to=reply_to)
        request.id = f"{uuid.uuid4()}-{n}"
        ids.append(request.id)
        publisher.publish(request)
    watchdog = threading.Timer(
        TIMEOUT, lambda: fail(f"{len(handler.replies)} of {len(ids)} replies within {TIMEOUT} s")
    )
    watchdog.start()
    consumer.run()
    watchdog.cancel()
    for message_id in ids:
        if message_id not in handler.replies:
            fail(f"no reply with correlation-id = {message_id!r}; got {sorted(handler.replies)}")
        print(handler.replies[message_id], flush=True)
    # Closing the connection after the consumer's loop was stopped hangs in
    # this client (1.0.1); the broker cleans up when the process exits.
    os._exit(0)

if __name__ == "__main__":
    main()

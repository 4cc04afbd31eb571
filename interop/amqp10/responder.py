#!/usr/bin/env python3
"""An AMQP 1.0 responder, written with RabbitMQ's own AMQP 1.0 client for
Python (rabbitmq-amqp-python-client, from PyPI), answering the way
RabbitMQ's Responder (its Java, Go and .NET AMQP 1.0 clients) does: to the
request's reply-to, with correlation-id = the request's message-id (and
nothing else of the request's).

    responder.py QUEUE

Declares QUEUE (a classic queue, as the responder's own) if it does not
exist, prints `ready` once it consumes it, and answers fib(n) for each
request whose body is n, until it is killed. The broker: env AMQP10_URL
(default amqp://guest:guest@127.0.0.1:5680/).
"""

import os
import sys

from rabbitmq_amqp_python_client import (
    AddressHelper,
    AMQPMessagingHandler,
    ClassicQueueSpecification,
    Converter,
    Environment,
    Event,
    Message,
)


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class Responder(AMQPMessagingHandler):
    def __init__(self, publisher):
        super().__init__()
        self.publisher = publisher

    def on_amqp_message(self, event: Event) -> None:
        request = event.message
        try:
            answer = str(fib(int(Converter.bytes_to_string(request.body).strip())))
        except ValueError as error:
            answer = f"not a number: {error}"
        reply = Message(body=Converter.string_to_bytes(answer))
        reply.address = request.reply_to
        reply.correlation_id = request.id
        self.publisher.publish(reply)
        self.delivery_context.accept(event)


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: responder.py QUEUE", file=sys.stderr)
        sys.exit(2)
    queue = sys.argv[1]
    url = os.environ.get("AMQP10_URL", "amqp://guest:guest@127.0.0.1:5680/")
    environment = Environment(uri=url)
    # Replies go out on a connection of their own: the consumer's loop runs
    # the other one.
    replies = environment.connection()
    replies.dial()
    connection = environment.connection()
    connection.dial()
    connection.management().declare_queue(ClassicQueueSpecification(name=queue))
    consumer = connection.consumer(
        AddressHelper.queue_address(queue),
        message_handler=Responder(replies.publisher()),
    )
    print("ready", flush=True)
    consumer.run()


if __name__ == "__main__":
    main()

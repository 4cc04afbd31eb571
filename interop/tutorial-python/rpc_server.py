#!/usr/bin/env python
"""RPC server of RabbitMQ tutorial 6 in Python (pika), as the tutorial is
published today: `rpc_queue` is declared durable with `x-queue-type:
quorum`. Copied for rabbit-rpc's interop check (interop/tutorial-python/run.sh).

Changes from the tutorial, and only these: the broker URL comes from env
AMQP_URL (default amqp://guest:guest@localhost:5672/%2F) and the queue from
env RPC_QUEUE (default rpc_queue), and output is flushed at once.
"""
import os

import pika

QUEUE = os.environ.get("RPC_QUEUE", "rpc_queue")

connection = pika.BlockingConnection(
    pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")))

channel = connection.channel()

channel.queue_declare(queue=QUEUE, durable=True, arguments={"x-queue-type": "quorum"})


def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


def on_request(ch, method, props, body):
    n = int(body)

    print(f" [.] fib({n})", flush=True)
    response = fib(n)

    ch.basic_publish(exchange="",
                     routing_key=props.reply_to,
                     properties=pika.BasicProperties(correlation_id=props.correlation_id),
                     body=str(response))
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue=QUEUE, on_message_callback=on_request)

print(" [x] Awaiting RPC requests", flush=True)
channel.start_consuming()

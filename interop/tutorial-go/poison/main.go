// A request that no lapin-based program can parse: its correlation_id is
// not valid UTF-8 (Go strings are bytes, so amqp091-go sends it as given).
// Published to $RPC_QUEUE (default rpc_queue) at $AMQP_URL (default the
// local guest account) by interop/tutorial-go/run.sh, check P.
package main

import (
	"context"
	"log"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	queue := os.Getenv("RPC_QUEUE")
	if queue == "" {
		queue = "rpc_queue"
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		log.Fatalf("Failed to connect to RabbitMQ: %s", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		log.Fatalf("Failed to open a channel: %s", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{
		ContentType:   "text/plain",
		CorrelationId: string([]byte{0xff, 0xfe, 0xfd}),
		ReplyTo:       "amq.rabbitmq.reply-to.nowhere",
		Body:          []byte("5"),
	})
	if err != nil {
		log.Fatalf("Failed to publish: %s", err)
	}
	log.Printf(" [x] Sent a request with an invalid UTF-8 correlation_id")
}

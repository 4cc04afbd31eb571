// RPC server from RabbitMQ tutorial 6 in Go ("receive.go" of "(六) RabbitMQ go教程——远程过程调用（RPC）",
// itself a port of https://www.rabbitmq.com/tutorials/tutorial-six-go), copied
// as faithfully as possible for rabbit-rpc's interop check (interop/tutorial-go/run.sh).
//
// Changes from the tutorial, and only these:
//   - the broker URL comes from env AMQP_URL (default
//     amqp://guest:guest@127.0.0.1:5672/) instead of the hard-coded 172.17.0.2;
//   - the request queue is rpc_queue unless env RPC_QUEUE names another one;
//   - this header, the envOr helper (and the "os" import it needs), and gofmt
//     formatting.
package main

import (
	"context"
	"log"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func failOnError(err error, msg string) {
	if err != nil {
		log.Panicf("%s:%s", err, msg)
	}
}

// envOr returns the value of env var key, or def if it is unset or empty.
// (Not in the tutorial: added for the interop check.)
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fib(n int) int {
	if n == 0 {
		return 0
	} else if n == 1 {
		return 1
	} else {
		return fib(n-2) + fib(n-1)
	}
}
func main() {
	//连接rabbitMQ服务端
	conn, err := amqp.Dial(envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
	failOnError(err, "Failed to connect to RabbitMQ")
	defer conn.Close()

	//创建管道
	ch, err := conn.Channel()
	failOnError(err, "Failed to open a channel")
	defer ch.Close()

	q, err := ch.QueueDeclare(
		envOr("RPC_QUEUE", "rpc_queue"),
		false,
		false,
		false,
		false,
		nil,
	)
	failOnError(err, "failed to declare a queue")

	err = ch.Qos(
		1,
		0,
		false,
	)

	failOnError(err, "Failed to set QoS")

	//将告诉服务段请在队列中传输消息，我们将在管道中读取到该消息
	msgs, err := ch.Consume(
		q.Name,
		"",
		//false,
		false, //ack
		false,
		false,
		false,
		nil,
	)
	failOnError(err, "Failed to register a consumer")

	var forever chan struct{}
	//forever := make(chan bool)

	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second*5)
		defer cancel()
		for d := range msgs {
			n, err := strconv.Atoi(string(d.Body))
			failOnError(err, "Failed to convert body to integer")

			log.Printf("[.] fib*(%d)", n)
			response := fib(n)

			err = ch.PublishWithContext(ctx,
				"",
				d.ReplyTo,
				false,
				false,
				amqp.Publishing{
					ContentType:   "text/plain",
					CorrelationId: d.CorrelationId,
					Body:          []byte(strconv.Itoa(response)),
				})
			failOnError(err, "Faild to publish a message")
			d.Ack(false)
		}
	}()
	log.Printf(" [*] Awaiting RPC requests")
	<-forever
}

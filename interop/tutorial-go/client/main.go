// RPC client from RabbitMQ tutorial 6 in Go ("send.go" of "(六) RabbitMQ go教程——远程过程调用（RPC）",
// itself a port of https://www.rabbitmq.com/tutorials/tutorial-six-go), copied
// as faithfully as possible for rabbit-rpc's interop check (interop/tutorial-go/run.sh).
//
// Changes from the tutorial, and only these:
//   - the broker URL comes from env AMQP_URL (default
//     amqp://guest:guest@127.0.0.1:5672/) instead of the hard-coded 172.17.0.2;
//   - the request queue is rpc_queue unless env RPC_QUEUE names another one;
//   - this header, the envOr helper, and gofmt formatting.
package main

import (
	"context"
	"log"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

//

// 定义一个helper函数来接受处理错误
func failOnError(err error, msg string) {
	if err != nil {
		log.Panicf("%s:%s", msg, err)
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

func randomString(l int) string {
	bytes := make([]byte, l)
	for i := 0; i < l; i++ {
		bytes[i] = byte(randInt(65, 90))
	}
	return string(bytes)
}
func randInt(min int, max int) int {
	return min + rand.Intn(max-min)
}
func fibonacciRPC(n int) (res int, err error) {
	//连接rabbitMQ服务端
	conn, err := amqp.Dial(envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
	failOnError(err, "Failed to connect to RabbitMQ")
	defer conn.Close()

	//创建管道
	ch, err := conn.Channel()
	failOnError(err, "Failed to open a channel")
	defer ch.Close()

	q, err := ch.QueueDeclare(
		"",
		false,
		false,
		true,
		false,
		nil,
	)

	failOnError(err, "Faild to declare a queue")

	msgs, err := ch.Consume(
		q.Name,
		"",
		true,
		false,
		false,
		false,
		nil,
	)
	failOnError(err, "Failed to register a consumer")

	corrId := randomString(32)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err = ch.PublishWithContext(ctx,
		"",                              // exchange
		envOr("RPC_QUEUE", "rpc_queue"), // routing key
		false,                           // mandatory
		false,                           // immediate
		amqp.Publishing{
			ContentType:   "text/plain",
			CorrelationId: corrId,
			ReplyTo:       q.Name,
			Body:          []byte(strconv.Itoa(n)),
		})
	failOnError(err, "Failed to publish a message")

	for d := range msgs {
		if corrId == d.CorrelationId {
			res, err = strconv.Atoi(string(d.Body))
			failOnError(err, "Failed to convert body to integer")
			break
		}
	}

	return
}
func main() {
	rand.Seed(time.Now().UTC().UnixNano())
	n := bodyFrom(os.Args)
	log.Printf("[x] Requesting fib(%d)", n)
	res, err := fibonacciRPC(n)
	failOnError(err, "Failed to handle RPC request")

	log.Printf(" [.] Got %d", res)

}

func bodyFrom(args []string) int {
	var s string
	if len(args) < 2 || os.Args[1] == "" {
		s = "30"
	} else {
		s = strings.Join(args[1:], " ")
	}
	n, err := strconv.Atoi(s)
	failOnError(err, "Failed to convert arg to integer")
	return n
}

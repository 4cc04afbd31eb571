//! The calculator's procedures, tested as a user of rabbit-rpc would test
//! their own: a real server and client, on the in-memory broker (feature
//! `test-util`), with no RabbitMQ to run.

use calculator_example::{
    Arithmetic, BadOperand, CalculatorClient, CalculatorServer, Division, Operands,
};
use rabbit_rpc::{CallOptions, Client, Code, MemoryBroker, Server};

/// A calculator served on a fresh in-memory broker, and a client of it.
async fn calculator() -> (MemoryBroker, CalculatorClient) {
    let broker = MemoryBroker::new();
    let server = Server::builder()
        .memory(&broker)
        .add_service(CalculatorServer::new(Arithmetic))
        .bind()
        .await
        .expect("bind");
    tokio::spawn(server.serve());
    let client = Client::builder()
        .memory(&broker)
        .connect()
        .await
        .expect("connect");
    (broker, CalculatorClient::new(client))
}

#[tokio::test]
async fn adds_and_divides() {
    let (_broker, calculator) = calculator().await;
    assert_eq!(calculator.add(&Operands { a: 2, b: 3 }).await.unwrap(), 5);
    assert_eq!(
        calculator.divide(&Operands { a: 7, b: 2 }).await.unwrap(),
        Division {
            quotient: 3,
            remainder: 1
        }
    );
    assert_eq!(calculator.sum(&vec![1, 2, 3]).await.unwrap(), 6);
}

#[tokio::test]
async fn dividing_by_zero_says_which_operand() {
    let (_broker, calculator) = calculator().await;
    let error = calculator
        .divide(&Operands { a: 1, b: 0 })
        .await
        .unwrap_err();
    let status = error.status().expect("an error reply");
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad: BadOperand = status.details().unwrap().expect("details");
    assert_eq!(bad.operand, "b");
}

#[tokio::test]
async fn overflow_is_an_error_not_a_wrong_answer() {
    let (_broker, calculator) = calculator().await;
    let error = calculator
        .add(&Operands { a: i64::MAX, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn greets_the_user_named_in_the_metadata() {
    let (_broker, calculator) = calculator().await;
    let options = CallOptions::new().metadata("user", "grace");
    assert_eq!(
        calculator.greet_with(&options).await.unwrap(),
        "hello, grace"
    );
    assert_eq!(calculator.greet().await.unwrap(), "hello, stranger");
}

#[tokio::test]
async fn each_method_is_a_queue_a_client_in_any_language_can_call() {
    let (broker, calculator) = calculator().await;
    for queue in [
        "calculator.add",
        "calculator.divide",
        "calculator.sum",
        "calculator.greet",
    ] {
        assert_eq!(broker.queue(queue).map(|q| q.consumers), Some(1), "{queue}");
    }
    // JSON by hand, as from another language.
    let reply = calculator
        .client()
        .call("calculator.add", r#"{"a": 40, "b": 2}"#)
        .await
        .unwrap();
    assert_eq!(reply.text(), "42");
}

#[tokio::test]
async fn each_procedure_describes_itself_with_its_doc_and_json_schemas() {
    let (_broker, calculator) = calculator().await;
    let options = CallOptions::new();
    let add = calculator
        .client()
        .describe("calculator.add", &options)
        .await
        .unwrap();
    assert_eq!(add.procedure(), Some("calculator.add"));
    assert_eq!(
        add.doc(),
        Some("`a + b`; `invalid_argument` if it overflows.")
    );
    assert_eq!(add.request().content_types(), ["application/json"]);
    let request: serde_json::Value =
        serde_json::from_str(add.request().schema_json().unwrap()).unwrap();
    assert_eq!(request["title"], "Operands");
    assert_eq!(request["required"], serde_json::json!(["a", "b"]));
    let reply: serde_json::Value =
        serde_json::from_str(add.reply().schema_json().unwrap()).unwrap();
    assert_eq!(reply["type"], "integer");
    // No handler ran: describing is not a call.
    let ping = calculator
        .client()
        .ping("calculator.greet", &options)
        .await
        .unwrap();
    assert!(ping.state().is_serving());
    assert_eq!(ping.procedure(), "calculator.greet");
}

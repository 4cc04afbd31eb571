//! What a server and a client measure, as a Prometheus scrape of the HTTP
//! endpoint (feature `http`) shows it. One test: the recorder is global to
//! the process.

mod common;

use std::time::Duration;

use rabbit_rpc::{CallOptions, Server, http};

/// The value of the sample `name{labels}` in a Prometheus text scrape.
fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

#[tokio::test]
async fn a_scrape_counts_the_calls_by_procedure_and_code_on_both_sides() {
    let metrics = http::Metrics::install().expect("install the recorder");
    assert!(
        http::Metrics::install().is_err(),
        "a second recorder is refused"
    );
    let queue = common::unique_queue("metrics");
    let server = Server::builder()
        .url(common::url())
        .procedure(&queue, common::echo())
        .queue_argument("x-expires", 60_000)
        .max_request_size(10)
        .bind()
        .await
        .expect("bind");
    let endpoint = http::Endpoint::bind("127.0.0.1:0")
        .await
        .unwrap()
        .metrics(metrics)
        .health(server.health());
    let address = endpoint.local_addr().unwrap().to_string();
    tokio::spawn(endpoint.serve());
    let serving = tokio::spawn(server.serve());
    let client = common::client().await;
    for _ in 0..5 {
        client.call(&queue, "hello").await.unwrap();
    }
    // Over the server's max_request_size: answered resource_exhausted.
    let error = client.call(&queue, "far too long").await.unwrap_err();
    assert_eq!(error.code(), rabbit_rpc::Code::ResourceExhausted);
    let missing = common::unique_queue("metrics_missing");
    let _ = client
        .call_with(
            &missing,
            "x",
            &CallOptions::new().timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();

    let (status, scrape) = common::http_get(&address, "/metrics").await;
    assert_eq!(status, 200);
    let method = format!("rpc_method=\"{queue}\"");
    let count = |name: &str, code: &str| {
        sample(
            &scrape,
            &format!("{name}_count"),
            &format!("{method},rpc_response_status_code=\"{code}\""),
        )
    };
    assert_eq!(
        count("rpc_server_call_duration_seconds", "ok"),
        Some(5.0),
        "{scrape}"
    );
    assert_eq!(
        count("rpc_server_call_duration_seconds", "resource_exhausted"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        count("rpc_client_call_duration_seconds", "ok"),
        Some(5.0),
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            "rpc_client_call_duration_seconds_count",
            &format!("rpc_method=\"{missing}\",rpc_response_status_code=\"not_found\"")
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "rpc_server_request_size_bytes_count", &method),
        Some(6.0)
    );
    assert_eq!(
        sample(&scrape, "rpc_server_requests_in_flight", &method),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &scrape,
            "rabbit_rpc_server_requests_total",
            &format!("{method},outcome=\"expired\"")
        ),
        Some(0.0)
    );
    assert!(
        scrape.contains("# HELP rpc_server_call_duration_seconds "),
        "{scrape}"
    );
    serving.abort();
    common::delete_queue(&queue).await;
}

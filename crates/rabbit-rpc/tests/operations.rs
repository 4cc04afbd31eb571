//! Running a server in production: its health, as readiness and liveness
//! probes see it through the HTTP endpoint (feature `http`).

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rabbit_rpc::{Request, Server, ServerState, Status, handler_fn, http};
use tokio::sync::Semaphore;

/// An endpoint answering probes for `health`, on a free port.
async fn probes(health: rabbit_rpc::Health) -> String {
    let endpoint = http::Endpoint::bind("127.0.0.1:0")
        .await
        .expect("listen")
        .health(health);
    let address = endpoint.local_addr().expect("address").to_string();
    tokio::spawn(endpoint.serve());
    address
}

#[tokio::test]
async fn probes_follow_a_server_from_connecting_through_draining_to_stopped() {
    let queue = common::unique_queue("ops_probes");
    let (gate, started) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let handler = {
        let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
        handler_fn(move |request: Request| {
            let gate = Arc::clone(&gate);
            started.fetch_add(1, Ordering::SeqCst);
            async move {
                gate.acquire().await.expect("gate").forget();
                Ok::<_, Status>(request.into_body())
            }
        })
    };
    let builder = Server::builder()
        .url(common::url())
        .procedure(&queue, handler)
        .queue_argument("x-expires", 60_000);
    let address = probes(builder.health()).await;
    assert_eq!(
        common::http_get(&address, "/readyz").await,
        (503, "not serving: connecting to the broker\n".to_owned())
    );
    assert_eq!(common::http_get(&address, "/livez").await.0, 200);

    let server = builder.bind().await.expect("bind");
    assert_eq!(
        common::http_get(&address, "/readyz").await,
        (200, format!("serving {queue}\n"))
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    let client = common::client().await;
    let call = common::spawn_call(&client, &queue, "in hand", Duration::from_secs(30));
    common::wait_until(Duration::from_secs(10), "the handler runs", || {
        let started = started.load(Ordering::SeqCst);
        async move { started == 1 }
    })
    .await;

    // Shutdown: not ready within a second, while the request in hand is
    // finished; still alive.
    stop.send(()).unwrap();
    common::wait_until(Duration::from_secs(1), "/readyz says draining", || {
        let address = address.clone();
        async move {
            let (status, body) = common::http_get(&address, "/readyz").await;
            status == 503 && body.contains("draining")
        }
    })
    .await;
    assert_eq!(common::http_get(&address, "/livez").await.0, 200);
    gate.add_permits(1);
    assert_eq!(call.await.unwrap().unwrap().text(), "in hand");
    serving.await.unwrap().unwrap();
    assert_eq!(
        common::http_get(&address, "/livez").await,
        (503, "stopped\n".to_owned())
    );
    assert_eq!(
        common::http_get(&address, "/readyz").await,
        (503, "not serving: stopped\n".to_owned())
    );
    common::delete_queue(&queue).await;
}

#[tokio::test]
async fn a_lost_connection_makes_a_server_unready_until_it_has_reconnected() {
    let (name, queue) = (
        common::unique_queue("ops_lost"),
        common::unique_queue("ops_lost"),
    );
    let server = Server::builder()
        .url(common::url())
        .connection_name(&name)
        .procedure(&queue, common::echo())
        .queue_argument("x-expires", 60_000)
        .bind()
        .await
        .expect("bind");
    let health = server.health();
    assert_eq!(health.state(), ServerState::Serving);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (mut health, seen) = (health.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            while let Some(state) = health.changed().await {
                seen.lock().unwrap().push(state);
            }
        })
    };
    let serving = tokio::spawn(server.serve());
    assert_eq!(common::close_connections_named(&name).await, 1);
    common::wait_until(Duration::from_secs(20), "it has reconnected", || {
        let seen = seen.lock().unwrap().clone();
        async move { seen.last() == Some(&ServerState::Serving) }
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        matches!(&seen[0], ServerState::Reconnecting { reason } if !reason.is_empty()),
        "{seen:?}"
    );
    let client = common::client().await;
    assert_eq!(client.call(&queue, "back").await.unwrap().text(), "back");
    serving.abort();
    watcher.abort();
    common::delete_queue(&queue).await;
}

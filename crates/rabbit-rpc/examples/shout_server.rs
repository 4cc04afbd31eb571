//! A server for the README's example: upper-cases text on queue `shout`.
//!
//! `cargo run -p rabbit-rpc --example shout_server`, then
//! `cargo run -p rabbit-rpc --example shout_client`.

use rabbit_rpc::{Request, Server, Status, blocking_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rabbit_rpc::Error> {
    let server = Server::builder().queue("shout").bind().await?;
    println!("serving 'shout'; Ctrl-C to stop");
    server
        .serve_with_shutdown(
            blocking_fn(|request: Request| -> Result<String, Status> {
                let text = request.text()?; // invalid UTF-8 -> invalid_argument reply
                if text.is_empty() {
                    return Err(Status::invalid_argument("say something"));
                }
                Ok(text.to_uppercase())
            }),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await
}

//! A client for the README's example; see `shout_server`.

use std::time::Duration;

use rabbit_rpc::{CallOptions, Client, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let client = Client::builder()
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    match client.call("shout", "hello").await {
        Ok(reply) => println!("{}", reply.text()), // HELLO
        Err(Error::Remote(status)) => eprintln!("server said {status}"),
        Err(e) if e.is_no_server() => eprintln!("nobody serves 'shout': {e}"),
        Err(e) if e.is_timeout() => eprintln!("too slow: {e}"),
        Err(e) => eprintln!("{e}"),
    }
    let quick = CallOptions::new()
        .timeout(Duration::from_millis(500))
        .content_type("text/plain");
    if let Err(e) = client.call_with("shout", "", &quick).await {
        eprintln!("{e}"); // server error: invalid_argument: say something
    }
    Ok(())
}

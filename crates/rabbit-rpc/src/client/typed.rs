//! Typed calls in JSON: [`Client::call_json`], the everyday typed call.

use serde::{Serialize, de::DeserializeOwned};

use super::{CallOptions, Client};
use crate::{
    Error,
    codec::{self, Codec, Json},
};

impl Client {
    /// Calls the typed procedure on `queue` with `args` as JSON, and decodes
    /// its JSON reply as an `R`: [`Client::call_with`] with
    /// [`codec::json`]`(args)`, the reply decoded.
    ///
    /// ```no_run
    /// # async fn example(client: rabbit_rpc::Client) -> Result<(), rabbit_rpc::Error> {
    /// #[derive(serde::Serialize)]
    /// struct Add { a: i64, b: i64 }
    /// let sum: i64 = client.call_json("calculator.add", &Add { a: 2, b: 3 }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Client::call_with`]; [`Error::Decode`] when the reply is not an
    /// `R`.
    pub async fn call_json<A, R>(&self, queue: &str, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_json_with(queue, args, &CallOptions::default())
            .await
    }

    /// [`Client::call_json`] with per-call options.
    ///
    /// # Errors
    /// As [`Client::call_json`].
    pub async fn call_json_with<A, R>(
        &self,
        queue: &str,
        args: &A,
        options: &CallOptions,
    ) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let reply = self.call_with(queue, codec::json(args), options).await?;
        Json::decode(reply.body()).map_err(|source| Error::Decode {
            queue: queue.to_owned(),
            source,
        })
    }
}

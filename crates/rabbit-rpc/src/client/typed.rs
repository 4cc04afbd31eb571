//! Typed calls: arguments encoded and the reply decoded by a [`Codec`].

use serde::{Serialize, de::DeserializeOwned};

use super::{CallOptions, Client};
use crate::{
    Error,
    codec::{Codec, Json},
};

impl Client {
    /// Calls the typed procedure on `queue` with `args` as JSON, and decodes
    /// its JSON reply as an `R`.
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
    /// As [`Client::call`]; [`Error::InvalidRequest`] when `args` does not
    /// encode, and [`Error::Decode`] when the reply is not an `R`.
    pub async fn call_json<A, R>(&self, queue: &str, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_encoded::<Json, A, R>(queue, args, &CallOptions::default())
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
        self.call_encoded::<Json, A, R>(queue, args, options).await
    }

    /// A typed call with codec `C`: `args` encoded by it and sent with its
    /// content type (unless `options` set another), the reply decoded by
    /// it.
    ///
    /// # Errors
    /// As [`Client::call_json`].
    pub async fn call_encoded<C, A, R>(
        &self,
        queue: &str,
        args: &A,
        options: &CallOptions,
    ) -> Result<R, Error>
    where
        C: Codec,
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let body = C::encode(args).map_err(|error| Error::InvalidRequest {
            reason: format!(
                "the arguments do not encode as {}: {error}",
                C::CONTENT_TYPE
            ),
        })?;
        let content_type = options.content_type.as_deref().unwrap_or(C::CONTENT_TYPE);
        let reply = self
            .call_raw(queue, &body, options, Some(content_type))
            .await?;
        C::decode(reply.body()).map_err(|error| Error::Decode {
            queue: queue.to_owned(),
            reason: error.to_string(),
        })
    }
}

//! What a server runs for each request: the [`Handler`] trait, the
//! [`Request`] it receives and the [`Response`] it returns.

use std::{future::Future, sync::Arc};

use lapin::types::ShortString;

use crate::Status;

/// One request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<ShortString>,
    pub(crate) correlation_id: Option<ShortString>,
    pub(crate) redelivered: bool,
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl Request {
    /// A request with this body, for calling a handler directly (in tests,
    /// say) without a broker.
    pub fn new(body: impl Into<Vec<u8>>) -> Request {
        Request {
            body: body.into(),
            content_type: None,
            correlation_id: None,
            redelivered: false,
            deadline: None,
        }
    }

    /// The request body as sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    /// An [`invalid_argument`](Status::invalid_argument) status, ready to
    /// return from a handler, when the body is not valid UTF-8.
    pub fn text(&self) -> Result<&str, Status> {
        std::str::from_utf8(&self.body).map_err(|e| {
            Status::invalid_argument(format!(
                "request body is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })
    }

    /// The `content_type` property the caller set, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_ref().map(ShortString::as_str)
    }

    /// The caller's `correlation_id`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_ref().map(ShortString::as_str)
    }

    /// True when the broker delivered this request before, to this or another
    /// server that did not acknowledge it: it crashed, lost its connection,
    /// or handed the request back unstarted while shutting down. The handler
    /// may have run for it already: handlers should be idempotent.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// When the caller stops waiting, if it said (rabbit-rpc clients send
    /// their timeout; tutorial clients do not). Counted from when this
    /// server received the request. A handler doing long work can stop at
    /// the deadline: nobody will read the answer.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }

    /// How long until [`Request::deadline`]: `None` without a deadline, zero
    /// once it has passed.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(tokio::time::Instant::now()))
    }
}

/// A successful result: a body and, optionally, its content type.
///
/// When no content type is set the reply carries the request's, so a
/// `text/plain` request gets a `text/plain` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
}

impl Response {
    /// A response with this body.
    pub fn new(body: impl Into<Vec<u8>>) -> Response {
        Response {
            body: body.into(),
            content_type: None,
        }
    }

    /// Sets the reply's `content_type`.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Response {
        self.content_type = Some(content_type.into());
        self
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl From<Vec<u8>> for Response {
    fn from(body: Vec<u8>) -> Response {
        Response::new(body)
    }
}

impl From<String> for Response {
    fn from(body: String) -> Response {
        Response::new(body)
    }
}

impl From<&str> for Response {
    fn from(body: &str) -> Response {
        Response::new(body)
    }
}

/// Turns a request into a response or an error [`Status`].
///
/// A panic inside a handler is caught and answered with an
/// [`internal`](Status::internal) status; the server keeps serving. Handlers
/// that burn CPU should not run on the async reactor: wrap them with
/// [`blocking_fn`], or call `tokio::task::spawn_blocking` inside.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, Status>> + Send;
}

impl<H: Handler> Handler for Arc<H> {
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, Status>> + Send {
        (**self).call(request)
    }
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
#[derive(Debug, Clone)]
pub struct HandlerFn<F>(F);

/// Makes a [`Handler`] from an async function or closure.
///
/// ```
/// use rabbit_rpc::{handler_fn, Request, Response, Status};
///
/// let echo = handler_fn(|request: Request| async move {
///     Ok::<_, Status>(Response::new(request.into_body()))
/// });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut, R>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    R: Into<Response>,
{
    HandlerFn(f)
}

impl<F, Fut, R> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    R: Into<Response>,
{
    async fn call(&self, request: Request) -> Result<Response, Status> {
        (self.0)(request).await.map(Into::into)
    }
}

/// A [`Handler`] that runs a synchronous function on tokio's blocking thread
/// pool; see [`blocking_fn`].
#[derive(Debug)]
pub struct BlockingFn<F>(Arc<F>);

/// Makes a [`Handler`] from a synchronous, possibly CPU-heavy function. It
/// runs on tokio's blocking pool, so it never stalls the connection or other
/// calls.
///
/// ```
/// use rabbit_rpc::{blocking_fn, Request, Status};
///
/// let upper = blocking_fn(|request: Request| -> Result<String, Status> {
///     Ok(request.text()?.to_uppercase())
/// });
/// # let _ = upper;
/// ```
pub fn blocking_fn<F, R>(f: F) -> BlockingFn<F>
where
    F: Fn(Request) -> Result<R, Status> + Send + Sync + 'static,
    R: Into<Response>,
{
    BlockingFn(Arc::new(f))
}

impl<F, R> Handler for BlockingFn<F>
where
    F: Fn(Request) -> Result<R, Status> + Send + Sync + 'static,
    R: Into<Response> + Send + 'static,
{
    async fn call(&self, request: Request) -> Result<Response, Status> {
        let f = Arc::clone(&self.0);
        match tokio::task::spawn_blocking(move || f(request).map(Into::into)).await {
            Ok(result) => result,
            // Re-raise so the server answers it like any other handler panic.
            Err(join_error) if join_error.is_panic() => {
                std::panic::resume_unwind(join_error.into_panic())
            }
            Err(_) => Err(Status::unavailable("the server is shutting down")),
        }
    }
}

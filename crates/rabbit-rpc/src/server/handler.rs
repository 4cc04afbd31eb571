//! What a server runs for each request: the [`Handler`] trait, the
//! [`Request`] it receives and the [`Response`] it returns; handlers made
//! from functions ([`handler_fn`], [`blocking_fn`], and typed ones with
//! [`typed_fn`]); and how the server stores handlers of different types side
//! by side.

use std::{future::Future, marker::PhantomData, pin::Pin, sync::Arc};

use serde::{Serialize, de::DeserializeOwned};

use super::context::Context;
use crate::{
    Description, Payload, Status,
    codec::{self, Codec, Json},
};

/// One request as a raw handler sees it: its [`Context`] and its body.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) context: Context,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// A request with this body and an empty context, for calling a handler
    /// directly (in tests, say) without a broker.
    pub fn new(body: impl Into<Vec<u8>>) -> Request {
        Request {
            context: Context::new(),
            body: body.into(),
        }
    }

    /// This request with `context` (for tests).
    pub fn with_context(mut self, context: Context) -> Request {
        self.context = context;
        self
    }

    /// The request body as sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Takes the context and the body.
    pub fn into_parts(self) -> (Context, Vec<u8>) {
        (self.context, self.body)
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

    /// What is known about the call besides its body: its content type,
    /// deadline, metadata, caller, whether it was delivered before, and
    /// its cancellation.
    pub fn context(&self) -> &Context {
        &self.context
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

    /// What this handler says about itself when a caller asks (a
    /// `describe` control request: `rabbit-rpc describe`,
    /// [`Client::describe`](crate::Client::describe)): what it takes and
    /// returns, and its documentation. Asked once, when the server binds.
    /// Default: bytes in, bytes out, no doc ([`Description::bytes`]);
    /// [`typed_fn`] handlers say JSON. A [`Procedure`](crate::Procedure)
    /// may override it ([`Procedure::description`](crate::Procedure::description),
    /// [`Procedure::doc`](crate::Procedure::doc)).
    fn describe(&self) -> Description {
        Description::bytes()
    }
}

impl<H: Handler> Handler for Arc<H> {
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, Status>> + Send {
        (**self).call(request)
    }

    fn describe(&self) -> Description {
        (**self).describe()
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
/// A running thread cannot be cancelled: when the request's deadline (or
/// the server's `handler_timeout`) passes, the server stops waiting for
/// the function and throws its result away, but the function runs on
/// unless it stops itself. Long work should check
/// [`Context::is_cancelled`] between steps (via [`Request::context`]).
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

/// A typed [`Handler`]: arguments decoded from the request, the result
/// encoded into the reply, by codec `C`; see [`typed_fn`].
pub struct TypedFn<F, A, R, C = Json> {
    f: F,
    /// JSON in and out; with schemas after [`TypedFn::with_schemas`].
    description: Description,
    _types: PhantomData<fn(A) -> (R, C)>,
}

impl<F, A, R, C> std::fmt::Debug for TypedFn<F, A, R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedFn")
            .field("args", &std::any::type_name::<A>())
            .field("result", &std::any::type_name::<R>())
            .finish()
    }
}

/// Makes a typed [`Handler`] from an async function of a [`Context`] and
/// arguments of any `Deserialize` type, returning any `Serialize` type.
///
/// Requests are decoded as JSON (`application/json`; a request without a
/// content type, or `text/plain`, is read as JSON too, so a tutorial client
/// can send JSON by hand), and replies are JSON. A request in another
/// content type, or one that does not decode, gets an `invalid_argument`
/// reply saying what was expected and where the body went wrong, without
/// running the function.
///
/// ```
/// use rabbit_rpc::{typed_fn, Context, Status};
///
/// #[derive(serde::Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// let add = typed_fn(|_context: Context, args: Add| async move {
///     args.a.checked_add(args.b).ok_or_else(|| Status::invalid_argument("overflow"))
/// });
/// # let _ = add;
/// ```
pub fn typed_fn<F, Fut, A, R>(f: F) -> TypedFn<F, A, R, Json>
where
    F: Fn(Context, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    TypedFn {
        f,
        description: Description::json(),
        _types: PhantomData,
    }
}

impl<F, A, R, C> TypedFn<F, A, R, C> {
    /// This handler with codec `C2` in place of JSON: requests decoded and
    /// replies encoded by it, and described as taking and giving its
    /// content type. (Schemas, `with_schemas` with feature `schema`, describe JSON.)
    ///
    /// ```
    /// use rabbit_rpc::{codec::Json, typed_fn, Context, Handler, Status};
    ///
    /// // Any `Codec`: a MessagePack or CBOR one is written the same way.
    /// let echo = typed_fn(|_context: Context, n: u64| async move { Ok::<_, Status>(n) })
    ///     .codec::<Json>();
    /// assert_eq!(echo.describe().request().content_types(), ["application/json"]);
    /// ```
    pub fn codec<C2: Codec>(self) -> TypedFn<F, A, R, C2> {
        TypedFn {
            f: self.f,
            description: Description::new(
                Payload::new([C2::CONTENT_TYPE]),
                Payload::new([C2::CONTENT_TYPE]),
            ),
            _types: PhantomData,
        }
    }
}

#[cfg(feature = "schema")]
impl<F, A, R, C> TypedFn<F, A, R, C>
where
    A: schemars::JsonSchema,
    R: schemars::JsonSchema,
{
    /// Describes this procedure with the JSON Schemas of its argument and
    /// result types (feature `schema`), as a `describe` request shows them:
    /// both types must implement `JsonSchema` (derive it beside serde's
    /// derives). `#[rabbit_rpc::service(schema)]` does this for every
    /// method.
    ///
    /// ```
    /// use rabbit_rpc::{typed_fn, Context, Handler, Status};
    ///
    /// #[derive(serde::Deserialize, rabbit_rpc::JsonSchema)]
    /// #[schemars(crate = "rabbit_rpc::schemars")]
    /// struct Add { a: i64, b: i64 }
    ///
    /// let add = typed_fn(|_context: Context, args: Add| async move {
    ///     Ok::<_, Status>(args.a + args.b)
    /// })
    /// .with_schemas();
    /// assert!(add.describe().request().schema_json().unwrap().contains("\"a\""));
    /// ```
    pub fn with_schemas(mut self) -> TypedFn<F, A, R, C> {
        self.description = Description::new(
            Payload::json_schema_of::<A>(),
            Payload::json_schema_of::<R>(),
        );
        self
    }
}

impl<F, Fut, A, R, C> Handler for TypedFn<F, A, R, C>
where
    F: Fn(Context, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    C: Codec,
{
    async fn call(&self, request: Request) -> Result<Response, Status> {
        let (context, body) = request.into_parts();
        if !codec::accepts::<C>(context.content_type()) {
            return Err(Status::invalid_argument(format!(
                "content type '{}' is not supported; this procedure takes {}",
                context.content_type().unwrap_or_default(),
                C::CONTENT_TYPE
            )));
        }
        let args: A = C::decode(&body).map_err(|error| {
            Status::invalid_argument(format!(
                "the request is not a valid {} ({}): {error}",
                short_type_name::<A>(),
                C::CONTENT_TYPE
            ))
        })?;
        let result = (self.f)(context, args).await?;
        let body = C::encode(&result).map_err(|error| {
            Status::internal(format!(
                "the result does not encode as {}: {error}",
                C::CONTENT_TYPE
            ))
        })?;
        Ok(Response::new(body).with_content_type(C::CONTENT_TYPE))
    }

    fn describe(&self) -> Description {
        self.description.clone()
    }
}

/// `Args` for `my_crate::api::Args`, `Vec<Item>` for
/// `alloc::vec::Vec<my_crate::Item>`: what a caller can recognise.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut short = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        match c {
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | ';' | '&' => {
                short.push_str(segment.rsplit("::").next().unwrap_or_default());
                segment.clear();
                short.push(c);
            }
            _ => segment.push(c),
        }
    }
    short.push_str(segment.rsplit("::").next().unwrap_or_default());
    short
}

/// A handler's future, boxed so handlers of different types can be stored
/// side by side.
pub(crate) type BoxedReply = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

/// A [`Handler`] behind a trait object: what a server stores for each
/// procedure.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call_boxed(&self, request: Request) -> BoxedReply;

    fn describe(&self) -> Description;
}

/// Erases a handler's type: one `Arc` clone and one box per request.
pub(crate) struct Erased<H>(pub(crate) Arc<H>);

impl<H: Handler> ErasedHandler for Erased<H> {
    fn call_boxed(&self, request: Request) -> BoxedReply {
        let handler = Arc::clone(&self.0);
        Box::pin(async move { handler.call(request).await })
    }

    fn describe(&self) -> Description {
        self.0.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_shortened_for_people() {
        assert_eq!(short_type_name::<String>(), "String");
        assert_eq!(short_type_name::<Vec<Option<u64>>>(), "Vec<Option<u64>>");
        assert_eq!(short_type_name::<(u8, String)>(), "(u8, String)");
    }

    #[tokio::test]
    async fn typed_handlers_decode_encode_and_refuse_what_they_cannot_read() {
        #[derive(serde::Deserialize)]
        struct Args {
            n: u64,
        }
        let double =
            typed_fn(|_context: Context, args: Args| async move { Ok::<_, Status>(args.n * 2) });
        let json = Context::new().with_content_type("application/json");
        let reply = double
            .call(Request::new(r#"{"n": 21}"#).with_context(json.clone()))
            .await
            .unwrap();
        assert_eq!(reply.body(), b"42");
        // What a tutorial client sends by hand.
        let plain = Context::new().with_content_type("text/plain");
        assert!(
            double
                .call(Request::new(r#"{"n": 1}"#).with_context(plain))
                .await
                .is_ok()
        );
        let missing = double
            .call(Request::new("{}").with_context(json))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), crate::Code::InvalidArgument);
        assert_eq!(
            missing.message(),
            "the request is not a valid Args (application/json): missing field `n` at line 1 column 2"
        );
        let xml = Context::new().with_content_type("application/xml");
        let unsupported = double
            .call(Request::new("<n>1</n>").with_context(xml))
            .await
            .unwrap_err();
        assert!(
            unsupported
                .message()
                .contains("'application/xml' is not supported"),
            "{unsupported}"
        );
    }
}

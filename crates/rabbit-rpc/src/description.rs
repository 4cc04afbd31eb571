//! [`Description`]: what a procedure says about itself when asked
//! (`describe`): its documentation, and what its requests and replies may
//! be ([`Payload`]: content types, and a JSON Schema for JSON).
//!
//! A server answers a `describe` control request with the description of
//! the procedure on that queue, as JSON (see `docs/PROTOCOL.md`);
//! [`Client::describe`](crate::Client::describe) reads it back.

use serde::{Deserialize, Serialize};

/// The content type of bytes with no particular format: what a raw
/// procedure takes and returns unless it says more.
const BYTES: &str = "application/octet-stream";

/// What a procedure says about itself: its documentation, and what its
/// requests and replies may be.
///
/// Handlers describe themselves ([`Handler::describe`](crate::Handler::describe)):
/// raw ones as bytes in and out ([`Description::bytes`]), typed ones as JSON
/// ([`Description::json`]), with JSON Schemas when asked
/// (`TypedFn::with_schemas`, feature `schema`, or
/// `#[rabbit_rpc::service(schema)]`). A [`Procedure`](crate::Procedure) can
/// be given a description or a doc of its own.
///
/// ```
/// use rabbit_rpc::{Description, Payload};
///
/// let shout = Description::new(Payload::new(["text/plain"]), Payload::new(["text/plain"]))
///     .with_doc("The request, in capitals.");
/// assert_eq!(shout.doc(), Some("The request, in capitals."));
/// assert_eq!(shout.request().content_types(), ["text/plain"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    procedure: Option<String>,
    #[serde(default)]
    doc: Option<String>,
    #[serde(default = "Payload::bytes")]
    request: Payload,
    #[serde(default = "Payload::bytes")]
    reply: Payload,
}

impl Description {
    /// Requests and replies as described, no doc.
    pub fn new(request: Payload, reply: Payload) -> Description {
        Description {
            procedure: None,
            doc: None,
            request,
            reply,
        }
    }

    /// Bytes in, bytes out ([`Payload::bytes`] both ways): how a raw
    /// handler describes itself unless it says more.
    pub fn bytes() -> Description {
        Description::new(Payload::bytes(), Payload::bytes())
    }

    /// JSON in, JSON out, no schema ([`Payload::json`] both ways): how a
    /// typed procedure describes itself.
    pub fn json() -> Description {
        Description::new(Payload::json(), Payload::json())
    }

    /// This description with `doc`: what the procedure does, for people.
    pub fn with_doc(mut self, doc: impl Into<String>) -> Description {
        self.doc = Some(doc.into());
        self
    }

    /// The procedure's queue: set in a description a server sent
    /// ([`Client::describe`](crate::Client::describe)), `None` in one a
    /// handler makes (the server adds its queue when it answers).
    pub fn procedure(&self) -> Option<&str> {
        self.procedure.as_deref()
    }

    /// What the procedure does, for people, if it says.
    pub fn doc(&self) -> Option<&str> {
        self.doc.as_deref()
    }

    /// What its requests may be.
    pub fn request(&self) -> &Payload {
        &self.request
    }

    /// What its successful replies may be.
    pub fn reply(&self) -> &Payload {
        &self.reply
    }

    /// This description as the server sends it: for the procedure on
    /// `queue`.
    pub(crate) fn for_procedure(mut self, queue: &str) -> Description {
        self.procedure = Some(queue.to_owned());
        self
    }
}

/// What a request or reply body may be: its content types and, for JSON,
/// its JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(default)]
    content_types: Vec<String>,
    /// JSON text; a JSON value on the wire.
    #[serde(default, with = "schema_text")]
    schema: Option<String>,
}

impl Payload {
    /// Bodies in any of `content_types`, no schema.
    pub fn new<I>(content_types: I) -> Payload
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Payload {
            content_types: content_types.into_iter().map(Into::into).collect(),
            schema: None,
        }
    }

    /// Bytes with no particular format (`application/octet-stream`).
    pub fn bytes() -> Payload {
        Payload::new([BYTES])
    }

    /// JSON (`application/json`), no schema.
    pub fn json() -> Payload {
        Payload::new([<crate::codec::Json as crate::codec::Codec>::CONTENT_TYPE])
    }

    /// JSON whose [JSON Schema](https://json-schema.org) is `T`'s, as the
    /// `schemars` crate derives it (feature `schema`).
    #[cfg(feature = "schema")]
    pub fn json_schema_of<T: schemars::JsonSchema + ?Sized>() -> Payload {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        Payload::json().with_schema_json(serde_json::Value::from(schema).to_string())
    }

    /// This payload with a JSON Schema, given as JSON text. It must be
    /// valid JSON: [`ServerBuilder::bind`](crate::ServerBuilder::bind)
    /// refuses a procedure whose description has a schema that is not.
    pub fn with_schema_json(mut self, schema: impl Into<String>) -> Payload {
        self.schema = Some(schema.into());
        self
    }

    /// The content types, e.g. `["application/json"]`.
    pub fn content_types(&self) -> &[String] {
        &self.content_types
    }

    /// The JSON Schema, as JSON text, if there is one.
    pub fn schema_json(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

/// A schema kept as JSON text, sent as the JSON value it is.
mod schema_text {
    use serde::{
        Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _,
    };

    pub(super) fn serialize<S: Serializer>(
        schema: &Option<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match schema {
            None => serializer.serialize_none(),
            Some(text) => serde_json::from_str::<serde_json::Value>(text)
                .map_err(|error| {
                    S::Error::custom(format!("the schema is not valid JSON: {error}"))
                })?
                .serialize(serializer),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        let value = Option::<serde_json::Value>::deserialize(deserializer)?;
        value
            .map(|value| serde_json::to_string(&value).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_crosses_the_wire_as_the_protocol_says() {
        let description = Description::new(
            Payload::json().with_schema_json(r#"{"type": "integer"}"#),
            Payload::bytes(),
        )
        .with_doc("n, doubled.")
        .for_procedure("double");
        let json: serde_json::Value = serde_json::to_value(&description).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "procedure": "double",
                "doc": "n, doubled.",
                "request": {"content_types": ["application/json"], "schema": {"type": "integer"}},
                "reply": {"content_types": ["application/octet-stream"], "schema": null},
            })
        );
        let back: Description = serde_json::from_value(json).unwrap();
        assert_eq!(back.procedure(), Some("double"));
        assert_eq!(back.request().schema_json(), Some(r#"{"type":"integer"}"#));
        assert_eq!(back.reply(), &Payload::bytes());
    }

    #[test]
    fn a_schema_that_is_not_json_does_not_encode() {
        let broken = Description::new(Payload::json().with_schema_json("{"), Payload::json());
        let error = serde_json::to_string(&broken).unwrap_err().to_string();
        assert!(error.contains("not valid JSON"), "{error}");
    }

    #[test]
    fn fields_a_server_leaves_out_read_as_their_defaults() {
        let sparse: Description = serde_json::from_str(r#"{"procedure": "p"}"#).unwrap();
        assert_eq!(sparse.doc(), None);
        assert_eq!(sparse.request(), &Payload::bytes());
    }
}

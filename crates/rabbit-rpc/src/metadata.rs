//! Metadata: a call's application headers, strings in and strings out,
//! like gRPC metadata. Auth tokens and trace context ride on it.

/// A call's metadata: names and text values, sent as AMQP headers.
///
/// Clients set it per call ([`CallOptions::metadata`](crate::CallOptions::metadata));
/// handlers read it ([`Context::metadata`](crate::Context::metadata)).
/// Names starting with `rpc-` are rabbit-rpc's own (`rpc-status`,
/// `rpc-timeout-ms`, …) and cannot be set; a handler sees every other
/// header of the request with a text or integer value (integers as decimal
/// text), including those other clients and the broker add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every name and value, in the order they were set or received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_and_get_finds() {
        let mut metadata = Metadata::new();
        metadata.insert("authorization", "Bearer a");
        metadata.insert("traceparent", "00-1-2-01");
        metadata.insert("authorization", "Bearer b");
        assert_eq!(metadata.get("authorization"), Some("Bearer b"));
        assert_eq!(metadata.len(), 2);
        assert_eq!(metadata.get("missing"), None);
    }
}

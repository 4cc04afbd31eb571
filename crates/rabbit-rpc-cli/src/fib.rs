//! The fibonacci service: exact big-integer results, validated input.

use num_bigint::BigUint;
use num_traits::{One, Zero};
use rabbit_rpc::{
    Description, Handler, Payload, Request, Response, Status,
    codec::{Codec, Json},
};

/// The largest `n` served unless configured otherwise (fib(100000) has 20899
/// digits).
pub const DEFAULT_MAX_N: u64 = 100_000;

/// Up to this `n` the answer takes microseconds and is computed on the async
/// reactor; above it, on the blocking pool so it stalls nothing.
const INLINE_MAX_N: u64 = 5_000;

/// fibonacci(n), exactly, by fast doubling: O(log n) big-integer
/// multiplications instead of the tutorial's exponential recursion.
///
/// F(2k) = F(k)·(2·F(k+1) − F(k)) and F(2k+1) = F(k)² + F(k+1)².
pub fn fibonacci(n: u64) -> BigUint {
    let mut a = BigUint::zero(); // F(k)
    let mut b = BigUint::one(); // F(k+1)
    for bit in (0..u64::BITS - n.leading_zeros()).rev() {
        let two_b_minus_a = (&b << 1u32) - &a;
        let f2k = &a * two_b_minus_a;
        let f2k1 = &a * &a + &b * &b;
        if (n >> bit) & 1 == 0 {
            a = f2k;
            b = f2k1;
        } else {
            b = &f2k + &f2k1;
            a = f2k1;
        }
    }
    a
}

/// Reads `n` from a request body: decimal text, surrounding whitespace
/// ignored, `0 <= n <= max_n`.
///
/// # Errors
/// An `invalid_argument` status naming the accepted range.
pub fn parse_n(body: &[u8], max_n: u64) -> Result<u64, Status> {
    // Only an error says it: not formatted for every request.
    let expected = || format!("expected a whole number n with 0 <= n <= {max_n}");
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(Status::invalid_argument(format!(
            "request body is not valid UTF-8; {}",
            expected()
        )));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(Status::invalid_argument(format!(
            "request body is empty; {}",
            expected()
        )));
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Status::invalid_argument(format!(
            "'{}' is not a whole number; {}",
            shorten(text),
            expected()
        )));
    }
    match text.parse::<u64>() {
        Ok(n) if n <= max_n => Ok(n),
        _ => Err(Status::invalid_argument(format!(
            "n = {} is out of range; {}",
            shorten(text),
            expected()
        ))),
    }
}

/// Echoes at most 40 characters of user input.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The fibonacci RPC handler. As text (the tutorial's form): body `n` as
/// decimal text, reply fib(n) as decimal text. As JSON (content type
/// `application/json`, or a body that starts with `{`): body `{"n": 30}`,
/// reply `{"n": 30, "fib": "832040"}` (the number as a string: it exceeds
/// every language's integers). Out-of-range input gets `invalid_argument`
/// with details `{"field": "n", "min": 0, "max": MAX_N}`.
#[derive(Debug, Clone, Copy)]
pub struct FibService {
    max_n: u64,
}

/// A JSON request.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    n: serde_json::Number,
}

/// A JSON reply.
#[derive(Debug, serde::Serialize)]
struct JsonReply {
    n: u64,
    fib: String,
}

/// The details of an out-of-range error: which field, and the range.
#[derive(Debug, serde::Serialize)]
struct Range {
    field: &'static str,
    min: u64,
    max: u64,
}

impl FibService {
    /// Serves `0..=max_n`.
    pub fn new(max_n: u64) -> FibService {
        FibService { max_n }
    }

    fn range(&self) -> Range {
        Range {
            field: "n",
            min: 0,
            max: self.max_n,
        }
    }

    /// `n` of a JSON request.
    fn json_n(&self, body: &[u8]) -> Result<u64, Status> {
        let expected = format!(
            "expected {{\"n\": n}} with n a whole number, 0 <= n <= {}",
            self.max_n
        );
        let request: JsonRequest = Json::decode(body).map_err(|error| {
            Status::invalid_argument(format!("the request is not valid: {error}; {expected}"))
        })?;
        match request.n.as_u64() {
            Some(n) if n <= self.max_n => Ok(n),
            Some(_) => Err(Status::invalid_argument(format!(
                "n = {} is out of range; {expected}",
                request.n
            ))
            .with_details(&self.range())),
            None if request.n.is_i64() => Err(Status::invalid_argument(format!(
                "n = {} is out of range; {expected}",
                request.n
            ))
            .with_details(&self.range())),
            None => Err(Status::invalid_argument(format!(
                "n = {} is not a whole number; {expected}",
                request.n
            ))),
        }
    }
}

impl Default for FibService {
    fn default() -> FibService {
        FibService::new(DEFAULT_MAX_N)
    }
}

/// Whether a request is in the JSON form.
fn is_json(request: &Request) -> bool {
    match request
        .context()
        .content_type()
        .map(|c| c.split(';').next().unwrap_or_default().trim())
    {
        Some(media) if media.eq_ignore_ascii_case(Json::CONTENT_TYPE) => true,
        // Typed by hand into a tutorial client, which sends text/plain or
        // nothing.
        _ => request.body().trim_ascii_start().starts_with(b"{"),
    }
}

/// fib(n) as decimal text: on the reactor for small n, else on the
/// blocking pool so it stalls nothing.
/// fibonacci(n) for n up to 93, the largest that fits a u64: no big
/// integers (a few thousand instructions less per request).
fn fibonacci_u64(n: u64) -> Option<u64> {
    if n > 93 {
        return None;
    }
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    Some(a)
}

async fn compute(n: u64) -> Result<String, Status> {
    if let Some(small) = fibonacci_u64(n) {
        return Ok(small.to_string());
    }
    if n <= INLINE_MAX_N {
        return Ok(fibonacci(n).to_string());
    }
    tokio::task::spawn_blocking(move || fibonacci(n).to_string())
        .await
        .map_err(|_| Status::unavailable("the server is shutting down"))
}

impl Handler for FibService {
    async fn call(&self, request: Request) -> Result<Response, Status> {
        if is_json(&request) {
            let n = self.json_n(request.body())?;
            let reply = JsonReply {
                n,
                fib: compute(n).await?,
            };
            let body = Json::encode(&reply).map_err(|error| Status::internal(error.to_string()))?;
            return Ok(Response::new(body).with_content_type(Json::CONTENT_TYPE));
        }
        let n = parse_n(request.body(), self.max_n).map_err(|status| {
            if status.message().contains("out of range") {
                status.with_details(&self.range())
            } else {
                status
            }
        })?;
        Ok(compute(n).await?.into())
    }

    /// Both forms, text and JSON; the schemas are the JSON form's.
    fn describe(&self) -> Description {
        let n = serde_json::json!({"type": "integer", "minimum": 0, "maximum": self.max_n});
        let request = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "FibRequest",
            "type": "object",
            "properties": {"n": n},
            "required": ["n"],
            "additionalProperties": false,
        });
        let reply = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "FibReply",
            "type": "object",
            "properties": {
                "n": n,
                "fib": {
                    "description": "fib(n) in decimal: it exceeds every language's integers",
                    "type": "string",
                    "pattern": "^[0-9]+$",
                },
            },
            "required": ["n", "fib"],
        });
        let both = ["text/plain", Json::CONTENT_TYPE];
        Description::new(
            Payload::new(both).with_schema_json(request.to_string()),
            Payload::new(both).with_schema_json(reply.to_string()),
        )
        .with_doc(format!(
            "fibonacci(n), exact. As text: n in decimal, 0 <= n <= {max}, answered with fib(n) \
             in decimal. As JSON (content type application/json, or a body that starts with \
             '{{'): {{\"n\": n}}, answered with {{\"n\": n, \"fib\": \"…\"}}; the schemas are \
             the JSON form's. An n out of range gets invalid_argument with details \
             {{\"field\": \"n\", \"min\": 0, \"max\": {max}}}.",
            max = self.max_n
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fib(n: u64) -> String {
        fibonacci(n).to_string()
    }

    #[test]
    fn small_n_without_big_integers_agree_with_fast_doubling() {
        for n in 0..=93 {
            assert_eq!(
                fibonacci_u64(n).map(|f| f.to_string()),
                Some(fib(n)),
                "n = {n}"
            );
        }
        assert_eq!(fibonacci_u64(94), None);
    }

    #[test]
    fn fib_describes_both_forms_with_the_json_forms_schemas() {
        let description = FibService::new(50).describe();
        assert_eq!(
            description.request().content_types(),
            ["text/plain", "application/json"]
        );
        let request: serde_json::Value =
            serde_json::from_str(description.request().schema_json().unwrap()).unwrap();
        assert_eq!(request["properties"]["n"]["maximum"], 50);
        let reply: serde_json::Value =
            serde_json::from_str(description.reply().schema_json().unwrap()).unwrap();
        assert_eq!(reply["required"], serde_json::json!(["n", "fib"]));
        assert!(description.doc().unwrap().contains("0 <= n <= 50"));
    }

    #[test]
    fn known_values() {
        assert_eq!(fib(0), "0");
        assert_eq!(fib(1), "1");
        assert_eq!(fib(2), "1");
        assert_eq!(fib(3), "2");
        assert_eq!(fib(10), "55");
        assert_eq!(fib(30), "832040");
        // The largest that fits in an i64 / u64, and the first that does not.
        assert_eq!(fib(92), "7540113804746346429");
        assert_eq!(fib(93), "12200160415121876738");
        assert_eq!(fib(94), "19740274219868223167");
        assert_eq!(
            fib(1000),
            "43466557686937456435688527675040625802564660517371780402481729089536555417949051890403879840079255169295922593080322634775209689623239873322471161642996440906533187938298969649928516003704476137795166849228875"
        );
    }

    #[test]
    fn matches_the_recurrence() {
        let mut a = BigUint::zero();
        let mut b = BigUint::one();
        for n in 0..300 {
            assert_eq!(fibonacci(n), a, "n = {n}");
            let next = &a + &b;
            a = std::mem::replace(&mut b, next);
        }
    }

    #[test]
    fn fib_100000_has_20899_digits() {
        let text = fib(100_000);
        assert_eq!(text.len(), 20899);
        // Independently computed (Python's integers, by iteration).
        assert!(text.starts_with("259740693472217241661550340212759154148804853865176965847247"));
        assert!(text.ends_with("289236362349895374653428746875"));
    }

    #[test]
    fn accepts_decimal_text_with_whitespace() {
        assert_eq!(parse_n(b"30", 100), Ok(30));
        assert_eq!(parse_n(b"  7\n", 100), Ok(7));
        assert_eq!(parse_n(b"0", 100), Ok(0));
        assert_eq!(parse_n(b"100", 100), Ok(100));
        assert_eq!(parse_n(b"+5", 100), Ok(5));
    }

    #[test]
    fn rejects_bad_input_naming_the_range() {
        let cases: [&[u8]; 10] = [
            b"-1",
            b"101",
            b"abc",
            b"",
            b"   ",
            b"3.5",
            b"12345678901234567890123456",
            b"\xff\xfe",
            b"{\"n\": 30}",
            b"-",
        ];
        for body in cases {
            let status = parse_n(body, 100).unwrap_err();
            assert_eq!(status.code(), rabbit_rpc::Code::InvalidArgument);
            assert!(
                status.message().contains("0 <= n <= 100"),
                "{body:?}: {}",
                status.message()
            );
        }
        assert!(
            parse_n(b"-1", 100)
                .unwrap_err()
                .message()
                .starts_with("n = -1 is out of range")
        );
    }

    async fn ask(body: &str, content_type: Option<&str>) -> Result<Response, Status> {
        let mut context = rabbit_rpc::Context::new();
        if let Some(content_type) = content_type {
            context = context.with_content_type(content_type);
        }
        FibService::new(100)
            .call(Request::new(body).with_context(context))
            .await
    }

    #[tokio::test]
    async fn speaks_json_as_well_as_text() {
        let reply = ask(r#"{"n": 30}"#, Some("application/json")).await.unwrap();
        assert_eq!(reply.body(), br#"{"n":30,"fib":"832040"}"#);
        // Typed by hand into a tutorial client: text/plain, or nothing.
        for content_type in [Some("text/plain"), None] {
            let reply = ask(r#" {"n": 10}"#, content_type).await.unwrap();
            assert_eq!(reply.body(), br#"{"n":10,"fib":"55"}"#);
        }
        let text = ask("30", Some("text/plain")).await.unwrap();
        assert_eq!(text.body(), b"832040");
    }

    #[tokio::test]
    async fn bad_json_gets_invalid_argument_saying_what_and_where() {
        for (body, says) in [
            (r#"{}"#, "missing field `n` at line 1 column 2"),
            (r#"{"n": -1}"#, "n = -1 is out of range"),
            (r#"{"n": 101}"#, "n = 101 is out of range"),
            (r#"{"n": 2.5}"#, "n = 2.5 is not a whole number"),
            (r#"{"n": "30"}"#, "n: invalid type: string"),
            (r#"{"n": 3"#, "EOF while parsing"),
            (r#"{"n": 3, "m": 4}"#, "unknown field `m`"),
        ] {
            let status = ask(body, Some("application/json")).await.unwrap_err();
            assert_eq!(status.code(), rabbit_rpc::Code::InvalidArgument, "{body}");
            assert!(status.message().contains(says), "{body}: {status}");
            assert!(
                status.message().contains("0 <= n <= 100"),
                "{body}: {status}"
            );
        }
        let out_of_range = ask(r#"{"n": 101}"#, None).await.unwrap_err();
        assert_eq!(
            out_of_range.details_json(),
            Some(r#"{"field":"n","min":0,"max":100}"#)
        );
        let text = ask("101", None).await.unwrap_err();
        assert!(text.details_json().is_some());
    }

    #[test]
    fn long_input_is_not_echoed_whole() {
        let body = "x".repeat(10_000);
        let status = parse_n(body.as_bytes(), 100).unwrap_err();
        assert!(status.message().len() < 200, "{}", status.message());
    }
}

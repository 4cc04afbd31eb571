//! What the server saw of a run, from its `/metrics` (`serve --http`):
//! `bench --server-http ADDR` scrapes it before and after, and reports the
//! difference beside its own figures.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DURATION: &str = "rpc_server_call_duration_seconds";

/// The server's side of a run, for one queue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerSide {
    /// Requests the server answered during the run, by response code.
    pub answered_by_code: BTreeMap<String, u64>,
    /// Their mean time on the server, from delivery to reply, in ms.
    pub mean_ms: f64,
    /// The median, estimated from the histogram's buckets (as Prometheus'
    /// `histogram_quantile` does), in ms.
    pub p50_ms: f64,
    /// The 99th percentile, estimated the same way, in ms.
    pub p99_ms: f64,
}

/// One scrape: for each response code, the buckets (upper bound, count),
/// the count and the sum, of the queue's duration histogram.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    codes: BTreeMap<String, Histogram>,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    count: f64,
    sum: f64,
}

/// `GET /metrics` from `address` (`host:port`), for `queue`.
///
/// # Errors
/// One phrase when the endpoint cannot be reached or answers otherwise.
pub async fn scrape(address: &str, queue: &str) -> Result<Scrape, String> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), get)
        .await
        .map_err(|_| format!("no answer from http://{address}/metrics within 5 s"))?
        .map_err(|error| format!("cannot read http://{address}/metrics: {error}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("http://{address}/metrics answered '{status}'"));
    }
    Ok(Scrape::parse(body, queue))
}

impl Scrape {
    /// The queue's duration histogram in a Prometheus text scrape.
    fn parse(text: &str, queue: &str) -> Scrape {
        let method = format!("rpc_method=\"{queue}\"");
        let mut scrape = Scrape::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(DURATION) else {
                continue;
            };
            let Some((series, labels_and_value)) = rest.split_once('{') else {
                continue;
            };
            let Some((labels, value)) = labels_and_value.rsplit_once("} ") else {
                continue;
            };
            if !labels.split(',').any(|label| label == method) {
                continue;
            }
            let (Some(code), Ok(value)) = (
                label(labels, "rpc_response_status_code"),
                value.trim().parse::<f64>(),
            ) else {
                continue;
            };
            let histogram = scrape.codes.entry(code.to_owned()).or_default();
            match series {
                "_bucket" => {
                    let le = label(labels, "le")
                        .map_or(f64::INFINITY, |le| le.parse().unwrap_or(f64::INFINITY));
                    histogram.buckets.push((le, value));
                }
                "_count" => histogram.count = value,
                "_sum" => histogram.sum = value,
                _ => {}
            }
        }
        scrape
    }

    /// What happened between `before` and this scrape.
    pub fn since(&self, before: &Scrape) -> ServerSide {
        let empty = Histogram::default();
        let mut answered_by_code = BTreeMap::new();
        let (mut count, mut sum) = (0.0, 0.0);
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (code, after) in &self.codes {
            let earlier = before.codes.get(code).unwrap_or(&empty);
            let answered = after.count - earlier.count;
            if answered > 0.0 {
                answered_by_code.insert(code.clone(), answered.round() as u64);
            }
            count += answered;
            sum += after.sum - earlier.sum;
            for &(le, n) in &after.buckets {
                let was = earlier
                    .buckets
                    .iter()
                    .find(|(bound, _)| *bound == le)
                    .map_or(0.0, |(_, n)| *n);
                buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += n - was;
            }
        }
        let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ms = |seconds: f64| seconds * 1000.0;
        ServerSide {
            answered_by_code,
            mean_ms: if count > 0.0 { ms(sum / count) } else { 0.0 },
            p50_ms: ms(quantile(&buckets, count, 0.5)),
            p99_ms: ms(quantile(&buckets, count, 0.99)),
        }
    }
}

/// The value of `name="…"` in a label list.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|label| {
        label
            .strip_prefix(name)?
            .strip_prefix("=\"")?
            .strip_suffix('"')
    })
}

/// The `q` quantile of cumulative `buckets` (upper bound, count) holding
/// `count` observations, interpolated linearly within its bucket, as
/// Prometheus' `histogram_quantile` does; the largest finite bound when it
/// falls in the last, unbounded one.
fn quantile(buckets: &[(f64, f64)], count: f64, q: f64) -> f64 {
    if count <= 0.0 {
        return 0.0;
    }
    let rank = q * count;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, cumulative) in buckets {
        if cumulative >= rank {
            if upper.is_infinite() {
                return lower;
            }
            let inside = cumulative - below;
            return if inside > 0.0 {
                lower + (upper - lower) * (rank - below) / inside
            } else {
                upper
            };
        }
        (lower, below) = (upper, cumulative);
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE rpc_server_call_duration_seconds histogram
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="ok",le="0.001"} 10
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="ok",le="0.01"} 10
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="ok",le="+Inf"} 10
rpc_server_call_duration_seconds_sum{rpc_method="q",rpc_response_status_code="ok"} 0.005
rpc_server_call_duration_seconds_count{rpc_method="q",rpc_response_status_code="ok"} 10
rpc_server_call_duration_seconds_count{rpc_method="other",rpc_response_status_code="ok"} 99
"#;

    const AFTER: &str = r#"rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="ok",le="0.001"} 60
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="ok",le="0.01"} 110
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="ok",le="+Inf"} 110
rpc_server_call_duration_seconds_sum{rpc_method="q",rpc_response_status_code="ok"} 0.305
rpc_server_call_duration_seconds_count{rpc_method="q",rpc_response_status_code="ok"} 110
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="invalid_argument",le="0.001"} 0
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="invalid_argument",le="0.01"} 2
rpc_server_call_duration_seconds_bucket{rpc_method="q",rpc_response_status_code="invalid_argument",le="+Inf"} 2
rpc_server_call_duration_seconds_sum{rpc_method="q",rpc_response_status_code="invalid_argument"} 0.004
rpc_server_call_duration_seconds_count{rpc_method="q",rpc_response_status_code="invalid_argument"} 2
"#;

    #[test]
    fn the_run_is_the_difference_of_two_scrapes_of_its_queue() {
        let side = Scrape::parse(AFTER, "q").since(&Scrape::parse(BEFORE, "q"));
        assert_eq!(
            side.answered_by_code,
            BTreeMap::from([("invalid_argument".into(), 2), ("ok".into(), 100)])
        );
        assert!((side.mean_ms - 304.0 / 102.0).abs() < 1e-9, "{side:?}");
        // 102 in the run: 50 under 1 ms, 52 between 1 and 10 ms; the 51st
        // is the first of those 52.
        assert!((side.p50_ms - (1.0 + 9.0 / 52.0)).abs() < 1e-9, "{side:?}");
        assert!(side.p99_ms > 9.0 && side.p99_ms <= 10.0, "{side:?}");
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let buckets = [(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(&buckets, 10.0, 0.5), 1.5);
        assert_eq!(quantile(&[], 0.0, 0.5), 0.0);
    }
}

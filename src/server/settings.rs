//! The HTTP edge's own settings, resolved: timeouts, drain deadline, concurrency caps and CORS
//! origins. `serve`'s flags (`cli::serve::HttpArgs`) are the raw form; every default lives here.

use std::time::Duration;

use axum::http::HeaderValue;

/// Default time a client has to send a request's headers, from its first byte (or from accepting
/// the connection, for the first request).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a kept-alive connection may wait for the next request's first byte. Longer than
/// the 60 s idle timeout common load balancers use, so the gateway is never the side that closes
/// a connection the balancer is about to reuse.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default time a request body may go without a single byte arriving. Total upload time is not
/// bounded: a slow but progressing upload is never cut.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for answering an ordinary request (long polls are bounded by their `wait`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time shutdown waits for requests in flight before closing every connection.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default cap on requests being answered at once (long polls and probes not counted).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Default cap on long polls (`GET /receipts/{cid}?follow=join`) waiting at once.
pub const DEFAULT_MAX_LONG_POLLS: usize = 256;
/// Default cap on workflow event streams (`GET /receipts/{cid}/events`) open at once.
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// Default time between heartbeats (SSE comments) on a stream with nothing else to say: shorter
/// than the idle timeouts of common proxies, which would otherwise cut a quiet stream.
pub const DEFAULT_STREAM_HEARTBEAT: Duration = Duration::from_secs(15);
/// How long one event stream stays open at most; a client resumes it with `Last-Event-ID`. Frees
/// the slots of streams following workflows that never settle.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// What a refused client is told to wait before trying again (`Retry-After`, seconds).
pub const RETRY_AFTER_SECS: u64 = 1;

/// Which origins browsers may call the gateway from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`Access-Control-Allow-Origin: *`). Safe here: authority travels in signed
    /// tokens, never in cookies, so a page on another origin gains nothing it could not send itself.
    Any,
    /// Only these origins (each `scheme://host[:port]`).
    List(Vec<HeaderValue>),
    /// No CORS headers at all: browsers refuse cross-origin reads.
    None,
}

impl CorsOrigins {
    /// From the operator's list: `*` for any, `none` for no CORS, else origins such as
    /// `https://app.example` or `http://localhost:5173`.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, String> {
        let values: Vec<&str> = values
            .iter()
            .map(|v| v.as_ref().trim())
            .filter(|v| !v.is_empty())
            .collect();
        match values.as_slice() {
            [] | ["*"] => return Ok(CorsOrigins::Any),
            ["none"] => return Ok(CorsOrigins::None),
            _ => {}
        }
        let mut list = Vec::new();
        for value in values {
            if value == "*" || value == "none" {
                return Err(format!("{value:?} cannot be combined with other origins"));
            }
            list.push(origin(value)?);
        }
        Ok(CorsOrigins::List(list))
    }
}

/// An origin as browsers send it: a scheme, a host, an optional port, no path and no slash.
fn origin(value: &str) -> Result<HeaderValue, String> {
    let bad =
        || format!("{value:?} is not an origin (scheme://host[:port], e.g. https://app.example)");
    let (scheme, rest) = value.split_once("://").ok_or_else(bad)?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !scheme_ok || !host_ok {
        return Err(bad());
    }
    // Browsers send the origin in lowercase; compare like with like.
    HeaderValue::from_str(&value.to_ascii_lowercase()).map_err(|_| bad())
}

/// The HTTP edge's settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Time to send a request's headers (see [`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may stay silent between requests.
    pub idle_timeout: Duration,
    /// Time a request body may go without progress.
    pub body_read_timeout: Duration,
    /// Deadline for answering an ordinary request.
    pub request_timeout: Duration,
    /// Time shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Requests answered at once; more are refused with 503 and `Retry-After`.
    pub max_in_flight: usize,
    /// Long polls waiting at once; more are refused with 503 and `Retry-After`.
    pub max_long_polls: usize,
    /// Event streams open at once; more are refused with 503 and `Retry-After`.
    pub max_streams: usize,
    /// Time between heartbeats on a quiet event stream.
    pub stream_heartbeat: Duration,
    /// Origins browsers may call from.
    pub cors: CorsOrigins,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_long_polls: DEFAULT_MAX_LONG_POLLS,
            max_streams: DEFAULT_MAX_STREAMS,
            stream_heartbeat: DEFAULT_STREAM_HEARTBEAT,
            cors: CorsOrigins::Any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_and_checked() {
        assert_eq!(CorsOrigins::parse::<&str>(&[]), Ok(CorsOrigins::Any));
        assert_eq!(CorsOrigins::parse(&["*"]), Ok(CorsOrigins::Any));
        assert_eq!(CorsOrigins::parse(&["none"]), Ok(CorsOrigins::None));
        assert_eq!(
            CorsOrigins::parse(&["https://App.example", "http://localhost:5173"]),
            Ok(CorsOrigins::List(vec![
                HeaderValue::from_static("https://app.example"),
                HeaderValue::from_static("http://localhost:5173"),
            ]))
        );
        for bad in ["app.example", "https://app.example/", "https://a b", "*,x"] {
            assert!(CorsOrigins::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(CorsOrigins::parse(&["*", "https://a.example"]).is_err());
    }
}

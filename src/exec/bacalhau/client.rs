//! The HTTP client of one Bacalhau network's v1 orchestrator API (submit, get, history, executions,
//! results, stop, nodes, agent health), with authentication, timeouts, bounded retries and
//! Bacalhau's error body turned into a typed [`BacalhauError`].
//!
//! Reads (and stops, which are idempotent) are retried with backoff on connection errors, 429 and
//! any 5xx. Each pause is the doubling backoff with jitter (a random half to full of it, so many
//! gateways retrying at once do not hit Bacalhau in step), or the `Retry-After` Bacalhau asked
//! for when that is longer; a `Retry-After` beyond [`MAX_RETRY_AFTER`] ends the retries (the
//! caller's deadline would pass first). A submit is never retried
//! blindly: its outcome may be unknown (the connection dropped after the request went out), so the
//! caller looks the job up by its name first and resubmits only when Bacalhau does not know it
//! (see [`Client::submit_once`] and `BacalhauExecutor`).

use std::fmt;
use std::time::Duration;

use rand_core::RngCore;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

/// The longest `Retry-After` honoured by waiting; a longer one ends the retries at once.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How the gateway authenticates to a Bacalhau network.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <key>`.
    Bearer(String),
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl fmt::Debug for Auth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API's base URL, e.g. `http://127.0.0.1:1234`.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Deadline of one HTTP request.
    pub request_timeout: Duration,
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// How many times a retryable request is tried in all.
    pub attempts: u32,
    /// The first pause between tries; doubled after each.
    pub backoff: Duration,
}

impl ClientConfig {
    /// Defaults for a network at `url` with `auth`: 10 s per request, 2 s to connect, 4 tries
    /// starting 100 ms apart.
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            url: url.into(),
            auth,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            attempts: 4,
            backoff: Duration::from_millis(100),
        }
    }
}

/// What kind of failure a Bacalhau call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BacalhauErrorKind {
    /// No connection could be made, or it broke before an answer arrived.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// Bacalhau answered with an error status and (usually) its error body.
    Api,
    /// The answer was not the JSON the API promises.
    Decode,
    /// The request could not be built (e.g. an invalid base URL).
    Request,
}

/// A failed Bacalhau call; its fields are read through [`BacalhauErrorData`]. Boxed, so results
/// carrying it stay small.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.describe())]
pub struct BacalhauError(Box<BacalhauErrorData>);

impl std::ops::Deref for BacalhauError {
    type Target = BacalhauErrorData;
    fn deref(&self) -> &BacalhauErrorData {
        &self.0
    }
}

/// What a failed Bacalhau call reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BacalhauErrorData {
    /// What kind of failure.
    pub kind: BacalhauErrorKind,
    /// The HTTP status, when Bacalhau answered.
    pub status: Option<u16>,
    /// Bacalhau's `Message`, or a description of the failure.
    pub message: String,
    /// Bacalhau's `Code` (e.g. `NotFound`, `BadRequest`).
    pub code: Option<String>,
    /// Bacalhau's `Hint`, a suggestion for the user.
    pub hint: Option<String>,
    /// Bacalhau's `RequestID`, to find the request in its logs.
    pub request_id: Option<String>,
    /// Bacalhau's `Component` that failed.
    pub component: Option<String>,
    /// How long Bacalhau asked us to wait before trying again (`Retry-After` in seconds).
    pub retry_after: Option<Duration>,
}

impl BacalhauError {
    pub(crate) fn new(kind: BacalhauErrorKind, message: impl Into<String>) -> Self {
        BacalhauError(Box::new(BacalhauErrorData {
            kind,
            status: None,
            message: message.into(),
            code: None,
            hint: None,
            request_id: None,
            component: None,
            retry_after: None,
        }))
    }

    /// The pause before try number `tries + 1`, given the pause `backoff` would take: `None` when
    /// Bacalhau asked for a wait longer than [`MAX_RETRY_AFTER`].
    pub fn pause(&self, backoff: Duration) -> Option<Duration> {
        let jittered = jitter(backoff);
        match self.retry_after {
            Some(asked) if asked > MAX_RETRY_AFTER => None,
            Some(asked) => Some(asked.max(jittered)),
            None => Some(jittered),
        }
    }
}

/// A random duration between half of `pause` and all of it.
fn jitter(pause: Duration) -> Duration {
    let half = pause / 2;
    let spread = u64::try_from((pause - half).as_micros()).unwrap_or(u64::MAX);
    let extra = if spread == 0 {
        0
    } else {
        rand_core::OsRng.next_u64() % (spread + 1)
    };
    half + Duration::from_micros(extra)
}

/// `Retry-After` as delta-seconds; the HTTP-date form is ignored (the backoff applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl BacalhauErrorData {
    fn describe(&self) -> String {
        let mut text = match self.status {
            Some(status) => format!("bacalhau answered {status}: {}", self.message),
            None => format!("bacalhau unreachable: {}", self.message),
        };
        if let Some(hint) = &self.hint {
            text.push_str(&format!(" (hint: {hint})"));
        }
        text
    }

    /// Whether Bacalhau said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Whether the call may succeed if tried again: no connection, a timeout, 429 or 503.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            BacalhauErrorKind::Connect | BacalhauErrorKind::Timeout
        ) || matches!(self.status, Some(429 | 503))
    }

    /// Whether an idempotent call (a read, a stop) is worth trying again: a transient failure or
    /// any 5xx, since repeating it cannot do harm.
    pub fn retryable_read(&self) -> bool {
        self.is_transient() || self.status.is_some_and(|s| (500..600).contains(&s))
    }

    /// Whether Bacalhau may have acted on the request even though no answer arrived (so a submit's
    /// outcome is unknown): the request was possibly delivered.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self.kind, BacalhauErrorKind::Timeout)
            || (self.kind == BacalhauErrorKind::Connect && self.status.is_none())
            || matches!(self.status, Some(500 | 502 | 504))
    }

    /// From Bacalhau's error body `{Status, Message, RequestID, Code, Component, Hint?, Details?}`;
    /// a body that is not that shape keeps its text as the message.
    fn from_body(status: StatusCode, body: &[u8]) -> BacalhauError {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            message: Option<String>,
            #[serde(rename = "RequestID")]
            request_id: Option<String>,
            code: Option<String>,
            component: Option<String>,
            hint: Option<String>,
        }
        let mut error = *BacalhauError::new(BacalhauErrorKind::Api, "").0;
        error.status = Some(status.as_u16());
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => {
                error.message = b.message.unwrap_or_else(|| status.to_string());
                error.request_id = b.request_id;
                error.code = b.code;
                error.component = b.component;
                error.hint = b.hint;
            }
            Err(_) => {
                let text: String = String::from_utf8_lossy(body).chars().take(512).collect();
                error.message = if text.trim().is_empty() {
                    status.to_string()
                } else {
                    text.trim().to_owned()
                };
            }
        }
        BacalhauError(Box::new(error))
    }
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Submitted {
    /// The job's id.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The evaluation created for it.
    #[serde(rename = "EvaluationID", default)]
    pub evaluation_id: String,
    /// Warnings about the spec.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// One page of a paged list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The items, as sent.
    pub items: Vec<Value>,
    /// The token for the next page; `None` when this is the last.
    pub next_token: Option<String>,
}

/// A client for one Bacalhau network.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
    http: reqwest::Client,
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Result<Self, BacalhauError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| BacalhauError::new(BacalhauErrorKind::Request, e.to_string()))?;
        Ok(Client { config, http })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Submits `job` once (`PUT /api/v1/orchestrator/jobs` with `{"Job": job}`), never retrying: on
    /// an error whose [`BacalhauError::outcome_unknown`] holds, look the job up by name before
    /// submitting again.
    pub async fn submit_once(&self, job: &Value) -> Result<Submitted, BacalhauError> {
        let body = serde_json::json!({ "Job": job });
        let value = self
            .call(Method::PUT, "/api/v1/orchestrator/jobs", &[], Some(&body))
            .await?;
        decode(value)
    }

    /// The job with this id or name, with its history and executions when `include` is true
    /// (`GET /api/v1/orchestrator/jobs/{id}`). `Ok(None)` when Bacalhau does not know it.
    pub async fn job(&self, id: &str, include: bool) -> Result<Option<Value>, BacalhauError> {
        let query: &[(&str, &str)] = if include {
            &[("include", "history,executions")]
        } else {
            &[]
        };
        match self.get(&format!("/jobs/{}", segment(id)), query).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of a job's history from `next_token` (`GET …/jobs/{id}/history`).
    pub async fn history(&self, id: &str, next_token: Option<&str>) -> Result<Page, BacalhauError> {
        let mut query = vec![];
        if let Some(token) = next_token {
            query.push(("next_token", token));
        }
        let value = self
            .get(&format!("/jobs/{}/history", segment(id)), &query)
            .await?;
        page(value, "Items")
    }

    /// Every execution of a job (`GET …/jobs/{id}/executions`), following `NextToken`.
    pub async fn executions(&self, id: &str) -> Result<Vec<Value>, BacalhauError> {
        self.all(&format!("/jobs/{}/executions", segment(id)), "Items")
            .await
    }

    /// The published results of a job (`GET …/jobs/{id}/results`), following `NextToken`.
    pub async fn results(&self, id: &str) -> Result<Vec<Value>, BacalhauError> {
        self.all(&format!("/jobs/{}/results", segment(id)), "Items")
            .await
    }

    /// Stops a job, with `reason` in the JSON body (`DELETE …/jobs/{id}`); stopping is idempotent,
    /// so it is retried like a read.
    pub async fn stop(&self, id: &str, reason: &str) -> Result<(), BacalhauError> {
        let body = serde_json::json!({ "reason": reason });
        let path = format!("/api/v1/orchestrator/jobs/{}", segment(id));
        self.retrying(|| self.call(Method::DELETE, &path, &[], Some(&body)))
            .await
            .map(drop)
    }

    /// The nodes of the network (`GET /api/v1/orchestrator/nodes`), following `NextToken`.
    pub async fn nodes(&self) -> Result<Vec<Value>, BacalhauError> {
        self.all("/nodes", "Nodes").await
    }

    /// Whether the agent answers one `GET /api/v1/agent/alive` within `timeout`, without retries
    /// (for readiness probes, which must stay cheap).
    pub async fn alive_once(&self, timeout: Duration) -> Result<(), BacalhauError> {
        self.send(
            self.request(Method::GET, "/api/v1/agent/alive", &[], None)?
                .timeout(timeout),
        )
        .await
        .map(drop)
    }

    /// Whether the agent answers (`GET /api/v1/agent/alive`), with its status text.
    pub async fn alive(&self) -> Result<String, BacalhauError> {
        let path = "/api/v1/agent/alive";
        let value = self
            .retrying(|| self.call(Method::GET, path, &[], None))
            .await?;
        Ok(value["Status"].as_str().unwrap_or_default().to_owned())
    }

    /// The agent's version (`GET /api/v1/agent/version`).
    pub async fn version(&self) -> Result<Value, BacalhauError> {
        let path = "/api/v1/agent/version";
        self.retrying(|| self.call(Method::GET, path, &[], None))
            .await
    }

    async fn all(&self, path: &str, key: &str) -> Result<Vec<Value>, BacalhauError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        // A bound on pages, so a server that keeps sending tokens cannot keep us here for good.
        for _ in 0..1000 {
            let query: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| vec![("next_token", t)])
                .unwrap_or_default();
            let p = page(self.get(path, &query).await?, key)?;
            items.extend(p.items);
            match p.next_token {
                Some(t) => token = Some(t),
                None => return Ok(items),
            }
        }
        Err(BacalhauError::new(
            BacalhauErrorKind::Decode,
            format!("{path}: more than 1000 pages"),
        ))
    }

    /// A GET under `/api/v1/orchestrator`, retried on transient failures.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, BacalhauError> {
        let path = format!("/api/v1/orchestrator{path}");
        self.retrying(|| self.call(Method::GET, &path, query, None))
            .await
    }

    async fn retrying<F, Fut>(&self, mut call: F) -> Result<Value, BacalhauError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Value, BacalhauError>>,
    {
        let mut backoff = self.config.backoff;
        let mut tries = 1;
        loop {
            match call().await {
                Err(e) if e.retryable_read() && tries < self.config.attempts.max(1) => {
                    let Some(pause) = e.pause(backoff) else {
                        return Err(e);
                    };
                    tracing::debug!(error = %e, tries, pause_ms = pause.as_millis(), "bacalhau call failed; retrying");
                    tokio::time::sleep(pause).await;
                    backoff = backoff.saturating_mul(2);
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, BacalhauError> {
        self.send(self.request(method, path, query, body)?).await
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<reqwest::RequestBuilder, BacalhauError> {
        let url = format!("{}{path}", self.config.url.trim_end_matches('/'));
        let mut request = self.http.request(method, url).query(query);
        request = match &self.config.auth {
            Auth::None => request,
            Auth::Bearer(key) => request.bearer_auth(key),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        };
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| BacalhauError::new(BacalhauErrorKind::Request, e.to_string()))?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        Ok(request)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, BacalhauError> {
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let path = response.url().path().to_owned();
        let wait = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let mut error = BacalhauErrorData::from_body(status, &bytes);
            error.0.retry_after = wait;
            return Err(error);
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            BacalhauError::new(BacalhauErrorKind::Decode, format!("{path}: not JSON: {e}"))
        })
    }
}

/// A path segment with the characters that would change the path escaped; ids and names are
/// caller-influenced.
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn transport(e: reqwest::Error) -> BacalhauError {
    let kind = if e.is_timeout() {
        BacalhauErrorKind::Timeout
    } else {
        BacalhauErrorKind::Connect
    };
    // reqwest's Display hides the cause ("error sending request"); the source says what broke.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    BacalhauError::new(kind, message)
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, BacalhauError> {
    serde_json::from_value(value)
        .map_err(|e| BacalhauError::new(BacalhauErrorKind::Decode, e.to_string()))
}

fn page(value: Value, key: &str) -> Result<Page, BacalhauError> {
    let items = match value.get(key) {
        Some(Value::Array(items)) => items.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(BacalhauError::new(
                BacalhauErrorKind::Decode,
                format!("`{key}` is not a list"),
            ));
        }
    };
    let next_token = value
        .get("NextToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok(Page { items, next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_read() {
        let body = br#"{"Status":400,"Message":"bad env","RequestID":"r1","Code":"BadRequest","Component":"Orchestrator","Hint":"use uppercase"}"#;
        let e = BacalhauErrorData::from_body(StatusCode::BAD_REQUEST, body);
        assert_eq!(e.status, Some(400));
        assert_eq!(e.message, "bad env");
        assert_eq!(e.code.as_deref(), Some("BadRequest"));
        assert_eq!(e.hint.as_deref(), Some("use uppercase"));
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert!(!e.is_transient());
        let plain = BacalhauErrorData::from_body(StatusCode::SERVICE_UNAVAILABLE, b"overloaded");
        assert_eq!(plain.message, "overloaded");
        assert!(plain.is_transient());
    }

    #[test]
    fn pauses_are_jittered_and_honour_retry_after() {
        let backoff = Duration::from_millis(400);
        let plain = BacalhauErrorData::from_body(StatusCode::SERVICE_UNAVAILABLE, b"");
        let pauses: Vec<Duration> = (0..64).map(|_| plain.pause(backoff).unwrap()).collect();
        assert!(pauses.iter().all(|p| *p >= backoff / 2 && *p <= backoff));
        assert!(pauses.iter().any(|p| *p != pauses[0]), "pauses vary");

        let mut asked = BacalhauErrorData::from_body(StatusCode::TOO_MANY_REQUESTS, b"");
        asked.0.retry_after = Some(Duration::from_secs(3));
        assert_eq!(asked.pause(backoff), Some(Duration::from_secs(3)));
        asked.0.retry_after = Some(MAX_RETRY_AFTER + Duration::from_secs(1));
        assert_eq!(
            asked.pause(backoff),
            None,
            "too long a wait ends the retries"
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("j-1a_b.c"), "j-1a_b.c");
        assert_eq!(segment("../x?y"), "..%2Fx%3Fy");
    }
}

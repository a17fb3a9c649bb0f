//! Talking to a running gateway: post an invocation and check the receipt that comes back, or fetch
//! a stored receipt. Every receipt's signature is checked against the DID the gateway announces at
//! `GET /`, so a tampered answer is never printed as if it were the gateway's.

use anyhow::{Context, anyhow, bail};
use cid::Cid;

use crate::receipt::Receipt;
use crate::ucan::container::Container;

/// What polling for a receipt found.
pub enum Polled {
    /// The verified receipt.
    Receipt(Box<Receipt>),
    /// Not yet: the awaited job's `{backend, job, state}`.
    Pending(serde_json::Value),
    /// The gateway's refusal (e.g. no such receipt).
    Refused(serde_json::Value),
}

/// A gateway at a base URL.
pub struct Remote {
    base: String,
    http: reqwest::Client,
}

impl Remote {
    /// A client for the gateway at `url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The gateway's DID, from its service description.
    pub async fn did(&self) -> anyhow::Result<String> {
        Ok(self.describe().await?.did)
    }

    /// The gateway's DID and the subjects it serves, from its service description.
    pub async fn describe(&self) -> anyhow::Result<Described> {
        let response = self
            .http
            .get(format!("{}/", self.base))
            .send()
            .await
            .context("contacting the gateway")?;
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)
            .context("the gateway's description is not JSON")?;
        let did = body["did"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the gateway's description names no DID"))?;
        let subjects = body["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(|s| {
                if s == "self" {
                    did.clone()
                } else {
                    s.to_owned()
                }
            })
            .collect();
        Ok(Described { did, subjects })
    }

    /// Posts a container whose invocations are `ran` (a pipeline's steps in order); returns their
    /// verified receipts in that order, up to any step the gateway refused, or the gateway's refusal
    /// of the whole request as JSON.
    pub async fn invoke(
        &self,
        container: Vec<u8>,
        gateway_did: &str,
        ran: &[Cid],
    ) -> anyhow::Result<Result<Answered, serde_json::Value>> {
        let response = self
            .http
            .post(format!("{}/", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(container)
            .send()
            .await
            .context("posting the invocation")?;
        let refused = response
            .headers()
            .get("ucan-gateway-refused")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let body = response.bytes().await.context("reading the response")?;
        if !status.is_success() {
            return Ok(Err(refusal_json(status, &body)));
        }
        let all = verified_receipts(&body, gateway_did)?;
        let mut receipts = Vec::with_capacity(ran.len());
        for cid in ran {
            match all.iter().find(|r| r.body.ran == *cid) {
                Some(receipt) => receipts.push(receipt.clone()),
                // The steps after a refused one never ran, so they have no receipt.
                None if refused.is_some() => {
                    return Ok(Ok(Answered {
                        receipts,
                        refused: refused.map(|name| (*cid, name)),
                    }));
                }
                None => bail!("the response holds no receipt for {cid}"),
            }
        }
        Ok(Ok(Answered {
            receipts,
            refused: None,
        }))
    }

    /// Fetches the receipt stored under `cid`.
    pub async fn receipt(
        &self,
        cid: &str,
        gateway_did: &str,
    ) -> anyhow::Result<Result<Receipt, serde_json::Value>> {
        let response = self
            .http
            .get(format!("{}/receipts/{cid}", self.base))
            .send()
            .await
            .context("fetching the receipt")?;
        self.read_receipt(response, gateway_did).await
    }

    /// Opens the event stream of the workflow under `cid` (`GET /receipts/{cid}/events`),
    /// resuming after the receipt `last`, waiting up to `wait` seconds for a first receipt not
    /// stored yet. No overall timeout: a stream lasts as long as the workflow (the gateway sends
    /// heartbeats and ends it itself).
    pub async fn events(
        &self,
        cid: &str,
        last: Option<&str>,
        wait: Option<u64>,
    ) -> anyhow::Result<reqwest::Response> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        let mut url = format!("{}/receipts/{cid}/events", self.base);
        if let Some(wait) = wait {
            url.push_str(&format!("?wait={wait}"));
        }
        let mut request = client.get(url);
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.send().await.context("opening the event stream")
    }

    /// Fetches the receipt stored under `cid`, or the state of the job it awaits (`202`).
    pub async fn poll_receipt(&self, cid: &str, gateway_did: &str) -> anyhow::Result<Polled> {
        let response = self
            .http
            .get(format!("{}/receipts/{cid}", self.base))
            .send()
            .await
            .context("fetching the receipt")?;
        if response.status() == reqwest::StatusCode::ACCEPTED {
            let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)
                .context("the pending answer is not JSON")?;
            return Ok(Polled::Pending(body["pending"].clone()));
        }
        Ok(match self.read_receipt(response, gateway_did).await? {
            Ok(receipt) => Polled::Receipt(Box::new(receipt)),
            Err(refusal) => Polled::Refused(refusal),
        })
    }

    /// The verified receipt in a response.
    async fn read_receipt(
        &self,
        response: reqwest::Response,
        gateway_did: &str,
    ) -> anyhow::Result<Result<Receipt, serde_json::Value>> {
        let status = response.status();
        let body = response.bytes().await.context("reading the response")?;
        if !status.is_success() {
            return Ok(Err(refusal_json(status, &body)));
        }
        let receipt = verified_receipts(&body, gateway_did)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the response holds no receipt"))?;
        Ok(Ok(receipt))
    }
}

/// The gateway's DID and the subjects it serves.
pub struct Described {
    /// The gateway's DID.
    pub did: String,
    /// The subjects it acts for, `self` resolved to its DID.
    pub subjects: Vec<String>,
}

/// The receipts a `POST /` answered with, in the order of the request's invocations.
pub struct Answered {
    /// One verified receipt per step that ran.
    pub receipts: Vec<Receipt>,
    /// The first step without a receipt and the refusal's name (the `ucan-gateway-refused` header);
    /// the steps after it did not run.
    pub refused: Option<(Cid, String)>,
}

fn refusal_json(status: reqwest::StatusCode, body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(
        |_| serde_json::json!({ "error": { "name": "HttpError", "message": status.to_string() } }),
    )
}

/// Every receipt in a response container, each checked against the gateway's DID.
fn verified_receipts(body: &[u8], gateway_did: &str) -> anyhow::Result<Vec<Receipt>> {
    let container = Container::decode(body).context("the response is not a UCAN container")?;
    // A container's tokens are sorted bytewise, so receipts (`/ucan/assert` tokens) need not come
    // first when effects travel with them; a pipeline's answer holds several.
    let receipts: Vec<Receipt> = container
        .tokens
        .iter()
        .filter_map(|t| Receipt::decode(t).ok())
        .collect();
    for receipt in &receipts {
        if let Err(e) = receipt.verify(Some(gateway_did)) {
            bail!("the receipt does not verify against the gateway {gateway_did}: {e}");
        }
    }
    Ok(receipts)
}

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
        let response = self
            .http
            .get(format!("{}/", self.base))
            .send()
            .await
            .context("contacting the gateway")?;
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)
            .context("the gateway's description is not JSON")?;
        body["did"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the gateway's description names no DID"))
    }

    /// Posts a container; returns the verified receipt for the invocation `ran` (the last step, when
    /// the container is a pipeline), or the gateway's refusal as JSON.
    pub async fn invoke(
        &self,
        container: Vec<u8>,
        gateway_did: &str,
        ran: Cid,
    ) -> anyhow::Result<Result<Receipt, serde_json::Value>> {
        let response = self
            .http
            .post(format!("{}/", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(container)
            .send()
            .await
            .context("posting the invocation")?;
        self.read_receipt(response, gateway_did, Some(ran)).await
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
        self.read_receipt(response, gateway_did, None).await
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
        Ok(
            match self.read_receipt(response, gateway_did, None).await? {
                Ok(receipt) => Polled::Receipt(Box::new(receipt)),
                Err(refusal) => Polled::Refused(refusal),
            },
        )
    }

    /// The verified receipt in a response: the one answering `ran` if given (a pipeline's answer
    /// holds several), else the first.
    async fn read_receipt(
        &self,
        response: reqwest::Response,
        gateway_did: &str,
        ran: Option<Cid>,
    ) -> anyhow::Result<Result<Receipt, serde_json::Value>> {
        let status = response.status();
        let body = response.bytes().await.context("reading the response")?;
        if !status.is_success() {
            let error = serde_json::from_slice(&body)
                .unwrap_or_else(|_| serde_json::json!({ "error": { "name": "HttpError", "message": status.to_string() } }));
            return Ok(Err(error));
        }
        let container = Container::decode(&body).context("the response is not a UCAN container")?;
        // A container's tokens are sorted bytewise, so the receipt (a `/ucan/assert` token) need not
        // come first when effects travel with it; a pipeline's answer holds several.
        let receipt = container
            .tokens
            .iter()
            .filter_map(|t| Receipt::decode(t).ok())
            .find(|r| ran.is_none_or(|ran| r.body.ran == ran))
            .ok_or_else(|| match ran {
                Some(ran) => anyhow!("the response holds no receipt for {ran}"),
                None => anyhow!("the response holds no receipt"),
            })?;
        if let Err(e) = receipt.verify(Some(gateway_did)) {
            bail!("the receipt does not verify against the gateway {gateway_did}: {e}");
        }
        Ok(Ok(receipt))
    }
}

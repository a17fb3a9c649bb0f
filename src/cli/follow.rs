//! `ucan-gateway receipt CID --tree --follow`: the tree drawn as it grows. Reads the gateway's
//! event stream (`GET /receipts/{cid}/events`) and prints each receipt as it is stored, indented
//! under the receipt whose effect it answers, until the workflow settles. Each receipt is fetched
//! again as a signed token and checked against the gateway's DID, as every receipt the CLI prints
//! is; the stream's JSON is only the notice. A stream the gateway ends early (shutdown, its
//! lifetime, its receipt limit) is resumed with `Last-Event-ID`, and repeats are dropped.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail};

use super::remote::Remote;
use super::tree::{Node, label};

/// How many times a stream ended early is resumed before giving up.
const MAX_RESUMES: usize = 10;

/// Follows the workflow under `cid` until it settles, waiting up to `wait` seconds for its first
/// receipt if it is not stored yet.
pub async fn follow(
    remote: &Remote,
    cid: &str,
    gateway_did: &str,
    json: bool,
    wait: Option<u64>,
) -> anyhow::Result<()> {
    // Each effect's task id: its depth in the tree and how its parent asked for it.
    let mut placed: HashMap<String, (usize, String)> = HashMap::new();
    let mut printed: HashSet<String> = HashSet::new();
    let mut last: Option<String> = None;
    for _ in 0..=MAX_RESUMES {
        // Once a receipt came, the workflow exists: a resumed stream need not wait.
        let waiting = if last.is_none() { wait } else { None };
        let mut response = remote.events(cid, last.as_deref(), waiting).await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        let mut buffer = String::new();
        let ended = 'stream: loop {
            let Some(chunk) = response.chunk().await? else {
                // Closed without an end event (a proxy, a crash): resume.
                break 'stream None;
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(at) = buffer.find("\n\n") {
                let block: String = buffer.drain(..at + 2).collect();
                let (event, id, data) = parse(&block);
                match event.as_str() {
                    "receipt" => {
                        let Some(id) = id else { continue };
                        if printed.insert(id.clone()) {
                            print_receipt(remote, &id, gateway_did, &mut placed, json).await?;
                        }
                        last = Some(id);
                    }
                    "end" => {
                        let reason: serde_json::Value =
                            serde_json::from_str(&data).unwrap_or_default();
                        break 'stream Some(reason["reason"].as_str().unwrap_or("").to_owned());
                    }
                    _ => {}
                }
            }
        };
        match ended.as_deref() {
            Some("settled") => return Ok(()),
            Some("shutdown" | "lifetime" | "limit") | None => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Some("missing") => bail!(
                "no receipt under {cid} after waiting {} s",
                wait.unwrap_or(0)
            ),
            Some(other) => bail!("the gateway ended the stream: {other}"),
        }
    }
    bail!("the stream ended early {MAX_RESUMES} times; run again to resume")
}

/// Fetches, checks and prints one receipt, placing its effects one level below it.
async fn print_receipt(
    remote: &Remote,
    id: &str,
    gateway_did: &str,
    placed: &mut HashMap<String, (usize, String)>,
    json: bool,
) -> anyhow::Result<()> {
    let receipt = remote
        .receipt(id, gateway_did)
        .await?
        .map_err(|refusal| anyhow!("receipt {id} announced but not served: {refusal}"))?;
    let task = receipt.body.task.to_string();
    let (depth, via) = match placed.get(&task) {
        Some((depth, via)) => (*depth, Some(via.clone())),
        None => (0, None),
    };
    let fx = &receipt.body.fx;
    for (kind, effect) in fx
        .fork
        .iter()
        .map(|e| ("fork", e))
        .chain(fx.join.iter().map(|e| ("join", e)))
    {
        placed
            .entry(effect.task_id().to_string())
            .or_insert((depth + 1, format!("{kind} {}", effect.cmd)));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "depth": depth, "via": via, "receipt": receipt.to_json() })
        );
    } else {
        let node = Node {
            via,
            task: Some(task),
            receipt: Some(receipt),
            children: Vec::new(),
        };
        println!("{}{}", "   ".repeat(depth), label(&node));
    }
    Ok(())
}

/// One event's type, id and data (comments and unknown fields skipped).
fn parse(block: &str) -> (String, Option<String>, String) {
    let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
    for line in block
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "id" => id = Some(value.to_owned()),
            "data" => data.push_str(value),
            _ => {}
        }
    }
    (event, id, data)
}

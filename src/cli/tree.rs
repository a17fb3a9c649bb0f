//! `ucan-gateway receipt CID --tree | --dot`: the invocation → receipt → effects tree, fetched from
//! a gateway receipt by receipt, each signature checked, drawn as text or as Graphviz DOT.
//!
//! An effect's receipt is found under the effect's task id (the task id its issued invocation has).
//! An effect without a receipt yet is shown as pending. The walk is breadth first with a visited
//! set and a node budget, so a long or repeating chain cannot make it run away.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;

use anyhow::anyhow;

use super::remote::Remote;
use crate::receipt::{Out, Receipt};

/// The most receipts fetched for one tree.
const MAX_NODES: usize = 256;

/// One node: a receipt (or a pending effect) and the effects it asked for.
#[derive(Debug)]
pub struct Node {
    /// How the parent asked for it (`fork`/`join` and the command); `None` for the root.
    pub via: Option<String>,
    /// The task id it was looked up by, for effects.
    pub task: Option<String>,
    /// The receipt, if one is stored.
    pub receipt: Option<Receipt>,
    /// Its effects' nodes.
    pub children: Vec<Node>,
}

/// Fetches the tree under `cid`, checking every receipt against `gateway_did`.
pub async fn fetch(remote: &Remote, cid: &str, gateway_did: &str) -> anyhow::Result<Node> {
    let root = remote
        .receipt(cid, gateway_did)
        .await?
        .map_err(|refusal| anyhow!("no receipt for {cid}: {refusal}"))?;
    let mut tree = Node {
        via: None,
        task: None,
        receipt: Some(root),
        children: Vec::new(),
    };
    let mut seen = HashSet::new();
    // Paths of child indices from the root to nodes whose effects are still to be fetched.
    let mut queue: VecDeque<Vec<usize>> = VecDeque::from([Vec::new()]);
    let mut fetched = 1;
    while let Some(path) = queue.pop_front() {
        let node = at(&mut tree, &path);
        let Some(receipt) = &node.receipt else {
            continue;
        };
        if !seen.insert(receipt.cid()) {
            continue;
        }
        let fx = &receipt.body.fx;
        let effects: Vec<_> = fx
            .fork
            .iter()
            .map(|e| ("fork", e))
            .chain(fx.join.iter().map(|e| ("join", e)))
            .map(|(kind, e)| (format!("{kind} {}", e.cmd), e.task_id().to_string()))
            .collect();
        for (via, task) in effects {
            let receipt = if fetched < MAX_NODES {
                fetched += 1;
                remote.receipt(&task, gateway_did).await?.ok()
            } else {
                None
            };
            let node = at(&mut tree, &path);
            node.children.push(Node {
                via: Some(via),
                task: Some(task),
                receipt,
                children: Vec::new(),
            });
            let mut child = path.clone();
            child.push(node.children.len() - 1);
            queue.push_back(child);
        }
    }
    Ok(tree)
}

fn at<'a>(tree: &'a mut Node, path: &[usize]) -> &'a mut Node {
    path.iter().fold(tree, |node, &i| &mut node.children[i])
}

/// `ok <value>` (shortened) or `error <name>: <message>`.
fn outcome(receipt: &Receipt) -> String {
    match &receipt.body.out {
        Out::Ok(value) => {
            let text = crate::ipld::to_dag_json(value).unwrap_or_else(|_| "…".into());
            let short: String = text.chars().take(60).collect();
            if short.len() < text.len() {
                format!("ok {short}…")
            } else {
                format!("ok {short}")
            }
        }
        Out::Error { name, message, .. } => format!("error {name}: {message}"),
    }
}

/// One node's line: how it was asked for, what ran, its receipt and outcome.
pub(super) fn label(node: &Node) -> String {
    let mut line = String::new();
    if let Some(via) = &node.via {
        let _ = write!(line, "{via} ");
    }
    match &node.receipt {
        Some(r) => {
            let _ = write!(
                line,
                "ran {} → receipt {}: {}",
                r.body.ran,
                r.cid(),
                outcome(r)
            );
        }
        None => {
            let task = node.task.as_deref().unwrap_or("?");
            let _ = write!(line, "task {task} → no receipt yet");
        }
    }
    line
}

/// The tree as indented text, one node per line.
pub fn render_text(tree: &Node) -> String {
    let mut out = String::new();
    // (node, prefix for its children, its own line prefix); walked with a stack, not recursion.
    let mut stack = vec![(tree, String::new(), String::new())];
    while let Some((node, prefix, lead)) = stack.pop() {
        let _ = writeln!(out, "{lead}{}", label(node));
        let last = node.children.len().saturating_sub(1);
        for (i, child) in node.children.iter().enumerate().rev() {
            let (branch, next) = if i == last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            stack.push((
                child,
                format!("{prefix}{next}"),
                format!("{prefix}{branch}"),
            ));
        }
    }
    out
}

/// The tree as one JSON document: `{"nodes": [{id, parent, via, task, receipt}]}`, parents before
/// their children, `receipt` null for an effect that has none yet. Flat, so no reader has to recurse.
pub fn render_json(tree: &Node) -> serde_json::Value {
    let mut nodes = Vec::new();
    let mut queue = VecDeque::from([(tree, None::<usize>)]);
    while let Some((node, parent)) = queue.pop_front() {
        let id = nodes.len();
        nodes.push(serde_json::json!({
            "id": id,
            "parent": parent,
            "via": node.via,
            "task": node.task,
            "receipt": node.receipt.as_ref().map(Receipt::to_json),
        }));
        queue.extend(node.children.iter().map(|c| (c, Some(id))));
    }
    serde_json::json!({ "nodes": nodes })
}

/// The tree as a Graphviz digraph: one node per receipt or pending effect, edges labelled `fork`
/// or `join` with the command.
pub fn render_dot(tree: &Node) -> String {
    let mut out = String::from("digraph receipts {\n  node [shape=box, fontname=monospace];\n");
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut stack = vec![(tree, "n0".to_owned())];
    let mut next = 1;
    while let Some((node, id)) = stack.pop() {
        let text = match &node.receipt {
            Some(r) => format!(
                "ran {}\\nreceipt {}\\n{}",
                r.body.ran,
                r.cid(),
                quote(&outcome(r))
            ),
            None => format!("task {}\\n(pending)", node.task.as_deref().unwrap_or("?")),
        };
        let _ = writeln!(out, "  {id} [label=\"{text}\"];");
        for child in &node.children {
            let child_id = format!("n{next}");
            next += 1;
            let via = quote(child.via.as_deref().unwrap_or(""));
            let _ = writeln!(out, "  {id} -> {child_id} [label=\"{via}\"];");
            stack.push((child, child_id));
        }
    }
    out.push_str("}\n");
    out
}

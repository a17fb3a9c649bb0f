//! Following a workflow as it grows: the receipt of an invocation, then the receipt of each of its
//! effects (forks and joins, at any depth) as it is stored, on this replica or another, until every
//! effect has its receipt. `GET /receipts/{cid}/events` streams what this yields; the HTTP edge adds
//! heartbeats, the cap on open streams and the end on shutdown.
//!
//! The tree is walked with a work list, never by recursion: each receipt found adds its effects'
//! task ids to the list of lookups still pending. It wakes on the ledger's notification when a
//! receipt is stored here (the one `follow=join` waits on) and looks again every poll interval for
//! receipts stored by other replicas. At most [`MAX_WORKFLOW_RECEIPTS`] receipts are followed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use cid::Cid;

use super::{Gateway, Refusal};
use crate::receipt::Receipt;

/// The most receipts one stream follows; effect trees the gateway runs itself are far smaller
/// (`[effects]` bounds), and a client resumes a longer one from a later receipt.
pub const MAX_WORKFLOW_RECEIPTS: usize = 1024;

/// How often a follower looks again when no wake-up came (receipts stored by another replica).
const POLL: Duration = Duration::from_millis(250);

/// Where a followed workflow stands.
pub struct Workflow {
    /// Lookups still to be answered: the CID asked for first, then effects' task ids.
    pending: VecDeque<Cid>,
    /// Every lookup ever queued, so an effect repeating a task is followed once.
    queued: HashSet<Cid>,
    /// Receipts found, not handed out yet, in the order found.
    ready: VecDeque<Receipt>,
    /// Receipts found (handed out or skipped).
    found: HashSet<Cid>,
    /// Receipts the client already has (a resumed stream), never handed out again.
    skip: HashSet<Cid>,
    /// Receipts handed out.
    sent: usize,
}

/// What following a workflow gives next.
pub enum Step {
    /// A receipt of the workflow, newly stored or newly found.
    Receipt(Box<Receipt>),
    /// Every effect has its receipt: the workflow is over.
    Settled,
    /// [`MAX_WORKFLOW_RECEIPTS`] were handed out.
    Limit,
}

impl Gateway {
    /// Starts following the workflow of the receipt stored under `cid` (an invocation CID, task
    /// id or receipt CID); `NotFound` if none is stored. `resume_after` is the last receipt a
    /// client received: it and the receipts it descends from are not handed out again (a child is
    /// always handed out after its parent, so those the client has for certain).
    pub async fn workflow(
        &self,
        cid: &Cid,
        resume_after: Option<Cid>,
    ) -> Result<Workflow, Refusal> {
        let mut flow = Workflow {
            pending: VecDeque::from([*cid]),
            queued: HashSet::from([*cid]),
            ready: VecDeque::new(),
            found: HashSet::new(),
            skip: HashSet::new(),
            sent: 0,
        };
        // What is stored already, with each receipt's parent, to know what to skip.
        let mut parents: HashMap<Cid, Cid> = HashMap::new();
        while self.look(&mut flow, &mut parents).await? {}
        if flow.found.is_empty() {
            return Err(Refusal::not_found(
                "NotFound",
                format!("no receipt for {cid}"),
            ));
        }
        if let Some(last) = resume_after.filter(|c| flow.found.contains(c)) {
            let mut at = Some(last);
            // Bounded by the receipts found; the chain of parents has no cycle (each was found
            // through its parent, once).
            while let Some(receipt) = at {
                if !flow.skip.insert(receipt) {
                    break;
                }
                at = parents.get(&receipt).copied();
            }
            flow.ready.retain(|r| !flow.skip.contains(&r.cid()));
        }
        Ok(flow)
    }

    /// [`Gateway::workflow`] once the receipt under `cid` is stored, waiting until `deadline` for
    /// it (a client may start following before it sends the invocation); `NotFound` if it was
    /// not stored by then.
    pub async fn workflow_once_stored(
        &self,
        cid: &Cid,
        resume_after: Option<Cid>,
        deadline: tokio::time::Instant,
    ) -> Result<Workflow, Refusal> {
        if self.ledger.wait_receipt(*cid, deadline).await?.is_none() {
            return Err(Refusal::not_found(
                "NotFound",
                format!("no receipt for {cid}"),
            ));
        }
        self.workflow(cid, resume_after).await
    }

    /// The next receipt of `flow`, waiting for one to be stored if none is ready. The caller bounds
    /// the wait (shutdown, the stream's lifetime); dropping the call loses nothing.
    pub async fn next_in_workflow(&self, flow: &mut Workflow) -> Result<Step, Refusal> {
        let mut parents = HashMap::new();
        loop {
            if flow.sent >= MAX_WORKFLOW_RECEIPTS {
                return Ok(Step::Limit);
            }
            if let Some(receipt) = flow.ready.pop_front() {
                flow.sent += 1;
                return Ok(Step::Receipt(Box::new(receipt)));
            }
            if flow.pending.is_empty() {
                return Ok(Step::Settled);
            }
            // Registered before looking, so a receipt stored in between still wakes us.
            let stored = self.ledger.stored();
            tokio::pin!(stored);
            stored.as_mut().enable();
            if self.look(flow, &mut parents).await? {
                continue;
            }
            let _ = tokio::time::timeout(POLL, stored).await;
        }
    }

    /// One pass over the pending lookups: each receipt found becomes ready and queues its effects.
    /// Whether anything was found.
    async fn look(
        &self,
        flow: &mut Workflow,
        parents: &mut HashMap<Cid, Cid>,
    ) -> Result<bool, Refusal> {
        let mut still = VecDeque::with_capacity(flow.pending.len());
        let mut any = false;
        while let Some(key) = flow.pending.pop_front() {
            let Some(receipt) = self.ledger.receipt(key).await? else {
                still.push_back(key);
                continue;
            };
            any = true;
            let cid = receipt.cid();
            if !flow.found.insert(cid) {
                continue;
            }
            let fx = &receipt.body.fx;
            for effect in fx.fork.iter().chain(fx.join.iter()) {
                let task = effect.task_id();
                // Bounded: a tree past the limit is cut there, and each task is queued once.
                if flow.queued.len() <= MAX_WORKFLOW_RECEIPTS && flow.queued.insert(task) {
                    still.push_back(task);
                    parents.insert(task, cid);
                }
            }
            if let Some(parent) = parents.get(&key).copied() {
                parents.insert(cid, parent);
            }
            flow.ready.push_back(receipt);
        }
        flow.pending = still;
        Ok(any)
    }
}

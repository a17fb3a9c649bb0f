//! What the gateway writes down about a job on an external backend, as the payload of the store's
//! pending entry, so the job is finished (and its receipt signed) even if the request that started it
//! never completes: the process crashed, or the caller hung up while the request waited.
//!
//! Two kinds: a job just **submitted** (written by the executor as soon as the backend accepted it,
//! keyed by the invocation; the request removes it once its receipt is stored), and a job **awaited**
//! through a join effect (written by the gateway when it issues the effect, keyed by the effect's task
//! id). Either way the final receipt answers `ran` under the task id `task`.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

/// The payload of a pending entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Whether the job was only submitted (the request still owes the receipt), rather than awaited
    /// through an issued effect.
    pub submitted: bool,
    /// The invocation the final receipt answers (the original one, or the issued await effect).
    pub ran: Cid,
    /// That invocation's task id.
    pub task: Cid,
    /// When the job must be over (Unix seconds); past it the job is stopped.
    pub deadline: i64,
    /// When the job was recorded (Unix seconds), for the receipt's duration.
    pub since: i64,
    /// What the gateway asked to have written down with the job (the task's
    /// [`crate::task::Task::journal_note`]), kept for it to read when the job is recorded and when
    /// it ends; executors copy it and never read it.
    pub note: Option<Ipld>,
}

impl JobRecord {
    /// DAG-CBOR `{kind, ran, task, deadline, since, note?}`.
    pub fn encode(&self) -> Vec<u8> {
        let kind = if self.submitted { "submitted" } else { "await" };
        let mut map = BTreeMap::from([
            ("kind".to_owned(), Ipld::String(kind.to_owned())),
            ("ran".to_owned(), Ipld::Link(self.ran)),
            ("task".to_owned(), Ipld::Link(self.task)),
            ("deadline".to_owned(), Ipld::Integer(self.deadline.into())),
            ("since".to_owned(), Ipld::Integer(self.since.into())),
        ]);
        if let Some(note) = &self.note {
            map.insert("note".to_owned(), note.clone());
        }
        // A map of a string, links and integers always encodes; a note that does not (a float
        // that is not finite, which the gateway never writes) is left out.
        crate::ipld::to_dag_cbor(&Ipld::Map(map.clone())).unwrap_or_else(|_| {
            map.remove("note");
            crate::ipld::to_dag_cbor(&Ipld::Map(map)).unwrap_or_default()
        })
    }

    /// Reads a payload written by [`JobRecord::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let value: Ipld = serde_ipld_dagcbor::from_slice(bytes).ok()?;
        let Ipld::Map(m) = value else { return None };
        let link = |k: &str| match m.get(k) {
            Some(Ipld::Link(c)) => Some(*c),
            _ => None,
        };
        let int = |k: &str| match m.get(k) {
            Some(Ipld::Integer(n)) => i64::try_from(*n).ok(),
            _ => None,
        };
        let submitted = match m.get("kind") {
            Some(Ipld::String(k)) if k == "submitted" => true,
            Some(Ipld::String(k)) if k == "await" => false,
            _ => return None,
        };
        Some(JobRecord {
            submitted,
            ran: link("ran")?,
            task: link("task")?,
            deadline: int("deadline")?,
            since: int("since")?,
            note: m.get("note").cloned(),
        })
    }
}

/// The arguments of a join effect that awaits a job (a backend's await command, e.g.
/// `/bacalhau/job/await`): which backend runs the job, its id there, and when it must be over. The
/// backend writes them; the gateway reads them to watch the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitedJob {
    /// The backend's name in the operator policy.
    pub backend: String,
    /// The backend's id for the job.
    pub job: String,
    /// When the job must be over (Unix seconds).
    pub deadline: i64,
}

impl AwaitedJob {
    /// `{job, backend, deadline}`.
    pub fn to_args(&self) -> BTreeMap<String, Ipld> {
        BTreeMap::from([
            ("job".to_owned(), Ipld::String(self.job.clone())),
            ("backend".to_owned(), Ipld::String(self.backend.clone())),
            ("deadline".to_owned(), Ipld::Integer(self.deadline.into())),
        ])
    }

    /// Reads the arguments [`AwaitedJob::to_args`] writes; `None` without a job and a backend. A
    /// missing or unreadable deadline means none.
    pub fn from_args(args: &BTreeMap<String, Ipld>) -> Option<Self> {
        let (Some(Ipld::String(job)), Some(Ipld::String(backend))) =
            (args.get("job"), args.get("backend"))
        else {
            return None;
        };
        let deadline = match args.get("deadline") {
            Some(Ipld::Integer(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
            _ => i64::MAX,
        };
        Some(AwaitedJob {
            backend: backend.clone(),
            job: job.clone(),
            deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        let cid = crate::ipld::dag_cbor_cid(b"x");
        for submitted in [true, false] {
            let r = JobRecord {
                submitted,
                ran: cid,
                task: cid,
                deadline: 10,
                since: 5,
                note: None,
            };
            assert_eq!(JobRecord::decode(&r.encode()), Some(r.clone()));
            let noted = JobRecord {
                note: Some(Ipld::List(vec![Ipld::Bool(true)])),
                ..r
            };
            assert_eq!(JobRecord::decode(&noted.encode()), Some(noted));
        }
        assert_eq!(JobRecord::decode(b"junk"), None);
        let other = crate::ipld::to_dag_cbor(&Ipld::Map(BTreeMap::from([(
            "kind".to_owned(),
            Ipld::String("x".into()),
        )])))
        .unwrap();
        assert_eq!(JobRecord::decode(&other), None);
    }
}

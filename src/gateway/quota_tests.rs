//! Unit tests of `quota.rs`: reading quotas, when a limit is reached, what is charged, and the
//! notes jobs carry.

use super::*;

fn quota(pairs: &[(&str, Ipld)]) -> Ipld {
    Ipld::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn text(s: &str) -> Ipld {
    Ipld::String(s.to_owned())
}

#[test]
fn any_subset_of_limits_with_a_window_is_read_and_written_back() {
    let q = Quota::parse(&quota(&[
        ("fuel", Ipld::Integer(5_000_000)),
        ("cpu_seconds", Ipld::Integer(600)),
        ("per", text("1d")),
    ]))
    .unwrap();
    assert_eq!(
        q,
        Quota {
            invocations: None,
            fuel: Some(5_000_000),
            cpu_seconds: Some(600),
            jobs: None,
            per: 86_400
        }
    );
    assert_eq!(Quota::parse(&q.to_ipld()), Ok(q));
}

#[test]
fn unreadable_quotas_are_refused_with_what_is_wrong() {
    for (bad, why) in [
        (quota(&[("per", text("1h"))]), "at least one"),
        (
            quota(&[("invocations", Ipld::Integer(1))]),
            "per must be a duration",
        ),
        (
            quota(&[("fuel", Ipld::Integer(-1)), ("per", text("1h"))]),
            "must not be negative",
        ),
        (
            quota(&[("jobs", Ipld::Float(1.5)), ("per", text("1h"))]),
            "whole number",
        ),
        (
            quota(&[("gpus", Ipld::Integer(1)), ("per", text("1h"))]),
            "unknown key \"gpus\"",
        ),
        (
            quota(&[("jobs", Ipld::Integer(1)), ("per", text("0s"))]),
            "1s to 366d",
        ),
        (Ipld::Integer(1), "must be a map"),
    ] {
        let err = Quota::parse(&bad).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn a_limit_is_reached_when_the_count_gets_to_it_and_time_counts_in_milliseconds() {
    let q = Quota {
        invocations: Some(3),
        fuel: None,
        cpu_seconds: Some(2),
        jobs: Some(0),
        per: 60,
    };
    let usage = |invocations, cpu_ms| QuotaUsage {
        invocations,
        metered: Metered {
            cpu_ms,
            ..Metered::default()
        },
    };
    let only_time = Quota { jobs: None, ..q };
    assert_eq!(only_time.reached(&usage(2, 1999)), None);
    assert_eq!(
        only_time.reached(&usage(2, 2000)),
        Some((Resource::CpuSeconds, 2, 2000))
    );
    assert_eq!(
        only_time.reached(&usage(3, 0)),
        Some((Resource::Invocations, 3, 3))
    );
    // A limit of zero is reached before anything is counted.
    assert_eq!(q.reached(&usage(0, 0)), Some((Resource::Jobs, 0, 0)));
    assert_eq!(Resource::CpuSeconds.shown(2050), "2.050");
}

#[test]
fn charges_count_only_what_each_quota_limits() {
    let key = crate::ipld::dag_cbor_cid(b"d");
    let fuel_only = Quota {
        invocations: None,
        fuel: Some(10),
        cpu_seconds: None,
        jobs: None,
        per: 60,
    };
    let used = Metered {
        fuel: 4,
        cpu_ms: 7,
        jobs: 0,
    };
    let quotas = Quotas {
        held: vec![Held {
            key,
            quota: fuel_only,
            at: 125,
        }],
        intent_charged: false,
    };
    let charges = quotas.receipt_charges(used);
    assert_eq!(
        charges,
        vec![QuotaCharge {
            key,
            window: 120,
            until: 180,
            invocations: None,
            metered: Metered {
                fuel: 4,
                ..Metered::default()
            },
        }]
    );
    // Nothing it limits was consumed (a memo hit): nothing to charge.
    assert!(quotas.receipt_charges(Metered::default()).is_empty());
}

#[test]
fn a_job_note_round_trips_and_counts_the_job_once() {
    let key = crate::ipld::dag_cbor_cid(b"d");
    let q = Quota {
        invocations: Some(5),
        fuel: None,
        cpu_seconds: Some(60),
        jobs: Some(2),
        per: 3600,
    };
    let quotas = Quotas {
        held: vec![Held {
            key,
            quota: q,
            at: 0,
        }],
        intent_charged: false,
    };
    let note = JobNote::read(&quotas.job_note(true).unwrap()).unwrap();
    let submitted = note.submission_charges(7200);
    assert_eq!(submitted.len(), 1);
    assert_eq!((submitted[0].window, submitted[0].metered.jobs), (7200, 1));
    assert_eq!(submitted[0].invocations, None, "counted with the receipt");
    let settled = note.settle_charges(
        7300,
        Metered {
            cpu_ms: 1500,
            ..Metered::default()
        },
    );
    assert_eq!(settled[0].metered.cpu_ms, 1500);
    assert_eq!(settled[0].metered.jobs, 0);
    let counted = JobNote::read(&quotas.job_note(false).unwrap()).unwrap();
    assert!(counted.submission_charges(0).is_empty());
    // Invocations alone are nothing a job's note needs.
    let plain = Quotas {
        held: vec![Held {
            key,
            quota: Quota {
                invocations: Some(1),
                fuel: None,
                cpu_seconds: None,
                jobs: None,
                per: 60,
            },
            at: 0,
        }],
        intent_charged: false,
    };
    assert_eq!(plain.job_note(true), None);
    assert_eq!(JobNote::read(&Ipld::Integer(1)), None);
}

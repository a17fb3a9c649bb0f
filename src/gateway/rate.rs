//! Operator rate limits (`[rate_limits]`): a token bucket of requests per second with a burst, and a
//! count of tasks running at once, for each invoker DID and each root issuer.
//!
//! **Per replica, in memory.** Each replica enforces the full budget on what it sees; shared
//! budgets would put a store round trip on every request, which is what the limits protect. With
//! N replicas a principal gets up to N times the budget.
//!
//! **Checked after authority.** The path asks only once the chain has been validated, so a
//! caller without authority can neither burn someone else's budget nor make the gateway track
//! principals of its own invention. A refusal consumes nothing: both budgets are checked before
//! either is charged.
//!
//! **Bounded.** At most `max_tracked` principals of each kind are tracked. A full, idle bucket is
//! the same as a fresh one, so those are forgotten first, all at once when the table fills; if none
//! is, the idle one with the most tokens goes (the principal it belonged to gets a fresh bucket,
//! a small leniency rather than a refusal of newcomers). Principals with tasks running are never
//! forgotten, so their counts stay right.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{Gateway, Refusal};
use crate::config::{Budget, RateLimits};

impl Gateway {
    /// Charges an invocation whose chain has been checked to its `invoker` and its root issuer
    /// (in UCAN 1.0 the root delegation is issued by the subject, so the root issuer is the
    /// `subject`). The gateway's own invocations (effects it runs itself) are bounded by
    /// `[effects]` instead.
    pub(super) fn rate_limit(
        &self,
        invoker: &str,
        subject: &str,
    ) -> Result<Option<Permit<'_>>, Refusal> {
        if invoker == self.did {
            return Ok(None);
        }
        self.rate.admit(invoker, subject).map(Some)
    }
}

/// One principal's state.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    running: u32,
}

/// The buckets of one kind of principal.
#[derive(Default)]
struct Table(HashMap<String, Bucket>);

/// Both kinds' buckets, behind one lock so a request's two checks are one decision.
pub(crate) struct Limiter {
    limits: RateLimits,
    tables: Mutex<[Table; 2]>,
}

const INVOKER: usize = 0;
const ISSUER: usize = 1;

/// Keeps a request's tasks counted as running until dropped.
pub(crate) struct Permit<'a> {
    limiter: &'a Limiter,
    keys: [Option<String>; 2],
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let Ok(mut tables) = self.limiter.tables.lock() else {
            return;
        };
        for (kind, key) in self.keys.iter().enumerate() {
            if let Some(key) = key
                && let Some(bucket) = tables[kind].0.get_mut(key)
            {
                bucket.running = bucket.running.saturating_sub(1);
            }
        }
    }
}

impl Limiter {
    /// A limiter enforcing `limits`.
    pub(crate) fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            tables: Mutex::new([Table::default(), Table::default()]),
        }
    }

    /// Charges one request to `invoker` and to the root issuer `issuer`, or refuses with
    /// `RateLimited` and how long to wait, charging nothing.
    pub(crate) fn admit(&self, invoker: &str, issuer: &str) -> Result<Permit<'_>, Refusal> {
        let mut permit = Permit {
            limiter: self,
            keys: [None, None],
        };
        if !self.limits.any() {
            return Ok(permit);
        }
        let now = Instant::now();
        let budgets = [
            (INVOKER, invoker, self.limits.invoker, "invoker"),
            (ISSUER, issuer, self.limits.issuer, "root issuer"),
        ];
        let mut tables = self
            .tables
            .lock()
            .map_err(|_| Refusal::rate_limited("RateLimited", "rate limits unavailable", 1))?;
        // Check both before charging either.
        for (kind, key, budget, what) in budgets {
            if !budget.is_set() {
                continue;
            }
            let bucket = tables[kind].0.get(key).copied();
            if let Some(wait) = refused(bucket, &budget, now) {
                return Err(Refusal::rate_limited(
                    "RateLimited",
                    format!("the {what} {key} is over this gateway's rate limit; {wait}"),
                    wait.secs,
                ));
            }
        }
        for (kind, key, budget, _) in budgets {
            if !budget.is_set() {
                continue;
            }
            let table = &mut tables[kind];
            if !table.0.contains_key(key) {
                table.make_room(self.limits.max_tracked, &budget, now)?;
            }
            let bucket = table.0.entry(key.to_owned()).or_insert(Bucket {
                tokens: full(&budget),
                updated: now,
                running: 0,
            });
            refill(bucket, &budget, now);
            if budget.rate.is_some() {
                bucket.tokens -= 1.0;
            }
            bucket.running += 1;
            permit.keys[kind] = Some(key.to_owned());
        }
        Ok(permit)
    }

    /// How many principals of each kind are tracked now (invokers, issuers).
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let tables = self.tables.lock().unwrap();
        (tables[INVOKER].0.len(), tables[ISSUER].0.len())
    }
}

impl Table {
    /// Frees a slot for a new principal, if the table is full.
    fn make_room(&mut self, max: usize, budget: &Budget, now: Instant) -> Result<(), Refusal> {
        if self.0.len() < max {
            return Ok(());
        }
        let cap = full(budget);
        self.0.retain(|_, b| {
            refill(b, budget, now);
            b.running > 0 || b.tokens < cap
        });
        if self.0.len() < max {
            return Ok(());
        }
        let fullest = self
            .0
            .iter()
            .filter(|(_, b)| b.running == 0)
            .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
            .map(|(k, _)| k.clone());
        match fullest {
            Some(key) => {
                self.0.remove(&key);
                Ok(())
            }
            // Every tracked principal has a task running: nothing can be forgotten safely.
            None => Err(Refusal::rate_limited(
                "RateLimited",
                "this gateway is tracking as many busy principals as it can; try again shortly",
                1,
            )),
        }
    }
}

/// When a principal may try again.
struct Wait {
    secs: u64,
    why: &'static str,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; try again in {} s", self.why, self.secs)
    }
}

/// Why `bucket` (as of `now`) cannot take one more request under `budget`, if it cannot.
fn refused(bucket: Option<Bucket>, budget: &Budget, now: Instant) -> Option<Wait> {
    let mut bucket = bucket?;
    refill(&mut bucket, budget, now);
    if let Some(max) = budget.concurrent
        && bucket.running >= max
    {
        return Some(Wait {
            secs: 1,
            why: "too many of its tasks are running",
        });
    }
    if let Some(rate) = budget.rate
        && bucket.tokens < 1.0
    {
        let secs = ((1.0 - bucket.tokens) / rate.per_second).ceil().max(1.0);
        return Some(Wait {
            secs: secs as u64,
            why: "too many requests",
        });
    }
    None
}

/// The tokens a bucket holds when full.
fn full(budget: &Budget) -> f64 {
    budget.rate.map_or(0.0, |r| f64::from(r.burst))
}

/// Adds the tokens earned since the bucket was last looked at.
fn refill(bucket: &mut Bucket, budget: &Budget, now: Instant) {
    if let Some(rate) = budget.rate {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
    }
    bucket.updated = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    fn limits(invoker: Budget, issuer: Budget, max_tracked: usize) -> RateLimits {
        RateLimits {
            invoker,
            issuer,
            max_tracked,
        }
    }

    const SLOW: Budget = Budget {
        rate: Some(Rate {
            per_second: 0.001,
            burst: 2,
        }),
        concurrent: None,
    };

    #[test]
    fn a_burst_then_refusals_that_charge_nothing() {
        let limiter = Limiter::new(limits(SLOW, Budget::default(), 10));
        drop(limiter.admit("a", "s").unwrap());
        drop(limiter.admit("a", "s").unwrap());
        let refusal = limiter.admit("a", "s").err().unwrap();
        assert_eq!(refusal.name, "RateLimited");
        assert!(refusal.retry_after.unwrap() >= 900, "{refusal:?}");
        // Another invoker has a budget of its own.
        drop(limiter.admit("b", "s").unwrap());
    }

    #[test]
    fn a_refusal_by_one_budget_charges_the_other_nothing() {
        let issuer = Budget {
            rate: Some(Rate {
                per_second: 0.001,
                burst: 1,
            }),
            concurrent: None,
        };
        let limiter = Limiter::new(limits(SLOW, issuer, 10));
        drop(limiter.admit("a", "s").unwrap());
        // The issuer's budget is spent: refused, and the invoker keeps its second token.
        assert!(limiter.admit("a", "s").is_err());
        assert!(limiter.admit("a", "s").is_err());
        drop(limiter.admit("a", "t").unwrap());
        assert!(
            limiter.admit("a", "u").is_err(),
            "the invoker's two are spent"
        );
    }

    #[test]
    fn concurrency_is_counted_until_the_permit_drops() {
        let two = Budget {
            rate: None,
            concurrent: Some(2),
        };
        let limiter = Limiter::new(limits(two, Budget::default(), 10));
        let first = limiter.admit("a", "s").unwrap();
        let _second = limiter.admit("a", "s").unwrap();
        assert_eq!(limiter.admit("a", "s").err().unwrap().retry_after, Some(1));
        drop(first);
        let _third = limiter.admit("a", "s").unwrap();
    }

    #[test]
    fn tracking_is_bounded_and_busy_principals_are_kept() {
        let limiter = Limiter::new(limits(SLOW, Budget::default(), 3));
        let busy = limiter.admit("busy", "s").unwrap();
        for i in 0..100 {
            drop(limiter.admit(&format!("p{i}"), "s").unwrap());
            assert!(limiter.tracked().0 <= 3);
        }
        // The busy one was never forgotten: its count still holds, and its one token is spent
        // with its next request.
        drop(limiter.admit("busy", "s").unwrap());
        assert!(limiter.admit("busy", "s").is_err());
        drop(busy);
    }

    #[test]
    fn no_limits_track_nothing() {
        let limiter = Limiter::new(RateLimits::default());
        for i in 0..100 {
            drop(limiter.admit(&format!("p{i}"), "s").unwrap());
        }
        assert_eq!(limiter.tracked(), (0, 0));
    }
}

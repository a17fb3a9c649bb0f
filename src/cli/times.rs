//! `--exp` and `--nbf`: one grammar for both (a duration from now such as `30m`, `12h`, `7d`, or a
//! Unix time in seconds; `--exp never` for no expiry), and the checks that stop a token from being
//! born useless: an expiry that is not in the future, or not after its not-before, is refused unless
//! `--force`. Refusals show each time as Unix seconds and RFC 3339, since nobody reads 1767225600.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, bail};

/// A Unix time as RFC 3339 (UTC, whole seconds), or the number itself when out of range.
pub fn rfc3339(unix: i64) -> String {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .filter(|t| *t < UNIX_EPOCH + Duration::from_secs(253_402_300_799))
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "beyond year 9999".to_owned()),
        Err(_) => "before 1970".to_owned(),
    }
}

/// `1767225600 (2026-01-01T00:00:00Z)`.
pub fn both(unix: i64) -> String {
    format!("{unix} ({})", rfc3339(unix))
}

/// A Unix time in seconds, or a duration from `now`; `flag` names the option in errors.
fn parse_time(flag: &str, text: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(ts) = text.parse::<i64>() {
        return Ok(ts);
    }
    let duration = humantime::parse_duration(text).map_err(|e| {
        anyhow!(
            "{flag} {text:?}: {e} (use a duration such as 30m, 12h, 7d, or a Unix time in seconds)"
        )
    })?;
    Ok(now.saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)))
}

/// The validity window of a new token, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Expiry (`None`: never).
    pub exp: Option<i64>,
    /// Not before.
    pub nbf: Option<i64>,
}

/// Reads `--exp` (`never` allowed) and `--nbf` as of `now`, refusing an expiry at or before `now`
/// or at or before the not-before, unless `force`.
pub fn window(exp: &str, nbf: Option<&str>, now: i64, force: bool) -> anyhow::Result<Window> {
    let exp = match exp {
        "never" => None,
        text => Some(parse_time("--exp", text, now)?),
    };
    let nbf = nbf.map(|t| parse_time("--nbf", t, now)).transpose()?;
    if !force && let Some(exp) = exp {
        if exp <= now {
            bail!(
                "--exp {} is not in the future (now is {}): the token would be expired on arrival; \
                 pass --force to make it anyway",
                both(exp),
                both(now)
            );
        }
        if let Some(nbf) = nbf
            && exp <= nbf
        {
            bail!(
                "--exp {} is not after --nbf {}: the token could never be used; pass --force to make it anyway",
                both(exp),
                both(nbf)
            );
        }
    }
    Ok(Window { exp, nbf })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    #[test]
    fn durations_and_unix_times_are_read_alike() {
        let w = window("1h", Some("10m"), NOW, false).unwrap();
        assert_eq!(w.exp, Some(NOW + 3600));
        assert_eq!(w.nbf, Some(NOW + 600));
        let w = window(&(NOW + 60).to_string(), Some(&NOW.to_string()), NOW, false).unwrap();
        assert_eq!((w.exp, w.nbf), (Some(NOW + 60), Some(NOW)));
        assert_eq!(window("never", None, NOW, false).unwrap().exp, None);
    }

    #[test]
    fn useless_expiries_are_refused_with_readable_times_unless_forced() {
        let e = window("0s", None, NOW, false).unwrap_err().to_string();
        assert!(e.contains("1767225600 (2026-01-01T00:00:00Z)"), "{e}");
        assert!(e.contains("--force"), "{e}");
        let e = window("1000", None, NOW, false).unwrap_err().to_string();
        assert!(e.contains("1000 (1970-01-01T00:16:40Z)"), "{e}");
        let e = window("1h", Some("2h"), NOW, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not after --nbf"), "{e}");
        assert_eq!(window("0s", None, NOW, true).unwrap().exp, Some(NOW));
        assert!(window("soon", None, NOW, false).is_err());
    }

    #[test]
    fn rfc3339_of_out_of_range_times_says_so() {
        assert_eq!(rfc3339(-5), "before 1970");
        assert_eq!(rfc3339(i64::MAX), "beyond year 9999");
    }
}

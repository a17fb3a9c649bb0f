//! How the PostgreSQL store connects, read from its URL: `pool_size`, `statement_timeout`,
//! `connect_timeout` and `schema` are ours; every other query parameter (`sslmode`,
//! `application_name`, …) goes to the driver as libpq would read it.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::store::{Result, StoreError, StoreErrorKind};

/// Connections the pool opens at most, unless the URL says `pool_size=N`.
pub const DEFAULT_POOL_SIZE: u32 = 16;
/// How long one statement may run before the server cancels it, unless `statement_timeout=…`.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a connection (opening one included), unless `connect_timeout=…`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool and timeouts of a [`super::PostgresStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections the pool keeps open at most (`pool_size`).
    pub pool_size: u32,
    /// Longest a statement may run before the server cancels it (`statement_timeout`); a cancelled
    /// statement rolls back its transaction and the call fails as unavailable.
    pub statement_timeout: Duration,
    /// Longest a call waits for a connection, including opening a new one (`connect_timeout`);
    /// past it the call fails as unavailable.
    pub connect_timeout: Duration,
    /// The schema the tables live in (`schema`), created if missing; default: the server's
    /// `search_path` (normally `public`). Letters, digits and `_` only.
    pub schema: Option<String>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: DEFAULT_POOL_SIZE,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            schema: None,
        }
    }
}

impl PostgresOptions {
    /// Splits `url` into our options and the driver's connection options.
    pub fn from_url(url: &str) -> Result<(Self, PgConnectOptions)> {
        let bad = |message: String| StoreError::new(StoreErrorKind::Open, "open", message);
        let mut parsed = url::Url::parse(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
        let mut options = PostgresOptions::default();
        let mut rest = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "pool_size" => {
                    options.pool_size =
                        value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            bad(format!("pool_size={value}: a whole number >= 1"))
                        })?;
                }
                "statement_timeout" => options.statement_timeout = duration(&key, &value)?,
                "connect_timeout" => options.connect_timeout = duration(&key, &value)?,
                "schema" => {
                    let valid = !value.is_empty()
                        && value.len() <= 48
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !value.as_bytes()[0].is_ascii_digit();
                    if !valid {
                        return Err(bad(format!(
                            "schema={value}: letters, digits and _ only, at most 48, not starting with a digit"
                        )));
                    }
                    options.schema = Some(value.to_ascii_lowercase());
                }
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        let connect: PgConnectOptions = parsed
            .as_str()
            .parse()
            .map_err(|e: sqlx::Error| bad(format!("{e}")))?;
        Ok((options, connect))
    }

    /// The driver's options with ours applied to every connection: the statement timeout and the
    /// schema as the session's `search_path`.
    pub(super) fn apply(&self, connect: PgConnectOptions) -> PgConnectOptions {
        let timeout = format!("{}ms", self.statement_timeout.as_millis().max(1));
        let mut settings = vec![("statement_timeout", timeout)];
        if let Some(schema) = &self.schema {
            settings.push(("search_path", schema.clone()));
        }
        connect.options(settings)
    }
}

/// A duration parameter: whole seconds (`5`) or humantime (`500ms`, `2s`).
fn duration(key: &str, value: &str) -> Result<Duration> {
    let parsed = match value.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(value).ok(),
    };
    parsed.filter(|d| !d.is_zero()).ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Open,
            "open",
            format!("{key}={value}: a positive duration such as 5 (seconds) or 500ms"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_read_and_the_rest_passed_on() {
        let (options, connect) = PostgresOptions::from_url(
            "postgres://u@db:5433/gw?pool_size=4&statement_timeout=250ms&connect_timeout=2&schema=Replica_1&application_name=gw",
        )
        .unwrap();
        assert_eq!(
            options,
            PostgresOptions {
                pool_size: 4,
                statement_timeout: Duration::from_millis(250),
                connect_timeout: Duration::from_secs(2),
                schema: Some("replica_1".into()),
            }
        );
        assert_eq!(connect.get_port(), 5433);
        assert_eq!(connect.get_database(), Some("gw"));
        assert_eq!(connect.get_application_name(), Some("gw"));
        let (defaults, _) = PostgresOptions::from_url("postgresql://localhost/test").unwrap();
        assert_eq!(defaults, PostgresOptions::default());
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (url, named) in [
            ("postgres://h/d?pool_size=0", "pool_size"),
            ("postgres://h/d?statement_timeout=soon", "statement_timeout"),
            ("postgres://h/d?connect_timeout=0", "connect_timeout"),
            ("postgres://h/d?schema=a;drop", "schema"),
            ("postgres://h/d?schema=1a", "schema"),
        ] {
            let err = PostgresOptions::from_url(url).unwrap_err();
            assert_eq!(err.kind, StoreErrorKind::Open);
            assert!(err.message.contains(named), "{url}: {err}");
        }
    }
}

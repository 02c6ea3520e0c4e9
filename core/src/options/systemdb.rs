//! `qorus.systemdb`: where the system database lives.
//!
//! Accepted forms: `sqlite:PATH` (also `sqlite://PATH` and `sqlite:///ABS/PATH`), a
//! `postgres://` / `postgresql://` URL, and Qorus's datasource string
//! `pgsql:USER/PASS@DB(CHARSET)%HOST:PORT{min=N,max=N}`, which is turned into a URL so the
//! store deals with one form only.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::resolve_path;
use crate::home::Home;
use crate::secret::Secret;

/// Everything but RFC 3986's unreserved characters, so a user, password or database name
/// survives the trip through a URL whatever it contains.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const FORMS: &str = "expected sqlite:PATH, postgres://USER:PASS@HOST:PORT/DB \
                     or pgsql:USER/PASS@DB%HOST:PORT";
const DATASOURCE_FORM: &str = "pgsql:USER/PASS@DB%HOST[:PORT]";
const DEFAULT_PG_PORT: u16 = 5432;

/// The system database. `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum SystemDb {
    /// An embedded SQLite file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL connection URL (`postgres://USER:PASS@HOST:PORT/DB`); it holds the
    /// password, so it is only read through [`Secret::expose`] to connect.
    Postgres { url: Secret },
}

impl SystemDb {
    /// Whether the value carries a password (which then must not sit in argv, where any
    /// local user can read it with `ps`).
    pub fn has_password(&self) -> bool {
        match self {
            SystemDb::Sqlite { .. } => false,
            SystemDb::Postgres { url } => url::Url::parse(url.expose())
                .map(|u| u.password().is_some())
                .unwrap_or(false),
        }
    }

    /// Parses a `qorus.systemdb` value; a relative SQLite path is under `home`. The error is
    /// a message for the operator and never repeats the value, which may hold a password.
    pub fn parse(value: &str, home: &Home) -> Result<SystemDb, String> {
        let value = value.trim();
        let Some((driver, rest)) = value.split_once(':') else {
            return Err(FORMS.to_owned());
        };
        // Only echo what looks like a driver name: a value missing its driver would otherwise
        // show its credentials here.
        let plausible_driver = !driver.is_empty()
            && driver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plausible_driver {
            return Err(FORMS.to_owned());
        }
        match driver.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => parse_sqlite(rest, home),
            "postgres" | "postgresql" if rest.starts_with("//") => parse_url(value),
            "pgsql" | "postgresql" | "postgres" => parse_datasource(rest),
            other => Err(format!(
                "unsupported database driver \"{other}\": \
                 only pgsql (PostgreSQL) and sqlite are supported"
            )),
        }
    }
}

fn parse_sqlite(rest: &str, home: &Home) -> Result<SystemDb, String> {
    // `sqlite://rel` and `sqlite:///abs` are URL spellings of `sqlite:rel` and `sqlite:/abs`.
    let path = rest.strip_prefix("//").unwrap_or(rest).trim();
    if path.is_empty() {
        return Err("sqlite needs a database file, e.g. sqlite:$OMQ_DIR/var/sluice.db".to_owned());
    }
    if path == ":memory:" || path.starts_with(":memory:?") {
        return Err(
            "an in-memory sqlite database cannot hold the system state: give a file".to_owned(),
        );
    }
    if path.contains('?') {
        return Err(
            "sqlite connection parameters (?...) are not supported: Sluice sets them itself"
                .to_owned(),
        );
    }
    Ok(SystemDb::Sqlite {
        path: resolve_path(path, home),
    })
}

fn parse_url(value: &str) -> Result<SystemDb, String> {
    // url::ParseError never repeats its input, so it is safe to show.
    let url = url::Url::parse(value).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    match url.host_str() {
        Some(host) if !host.is_empty() => {}
        _ => {
            return Err(
                "PostgreSQL URL has no host: expected postgres://USER:PASS@HOST:PORT/DB".to_owned(),
            )
        }
    }
    Ok(SystemDb::Postgres {
        url: Secret::new(value),
    })
}

/// Qorus's `USER/PASS@DB(CHARSET)%HOST:PORT{OPTIONS}` (the part after `pgsql:`).
fn parse_datasource(rest: &str) -> Result<SystemDb, String> {
    // Options only ever close the string, so a `{` inside a password is not mistaken for them.
    let body = match rest.strip_suffix('}') {
        Some(inner) => {
            let Some(open) = inner.rfind('{') else {
                return Err("'}' without '{' at the end of the datasource".to_owned());
            };
            check_datasource_options(&inner[open + 1..])?;
            &inner[..open]
        }
        None => rest,
    };

    // A password may contain '@' and '/', user names and database names do not.
    let Some((credentials, target)) = body.rsplit_once('@') else {
        return Err(format!(
            "missing '@' in the datasource: expected {DATASOURCE_FORM}"
        ));
    };
    let (user, password) = match credentials.split_once('/') {
        Some((user, password)) => (user.trim(), Some(password)),
        None => (credentials.trim(), None),
    };
    if user.is_empty() {
        return Err(format!(
            "the datasource has no user: expected {DATASOURCE_FORM}"
        ));
    }
    let Some((db_part, host_part)) = target.split_once('%') else {
        return Err(format!(
            "the datasource has no host: expected {DATASOURCE_FORM}"
        ));
    };
    let db = match db_part.split_once('(') {
        Some((db, charset)) => {
            let Some(charset) = charset.strip_suffix(')') else {
                return Err("unterminated '(' after the database name".to_owned());
            };
            check_charset(charset.trim())?;
            db.trim()
        }
        None => db_part.trim(),
    };
    if db.is_empty() {
        return Err(format!(
            "the datasource has no database name: expected {DATASOURCE_FORM}"
        ));
    }
    let (host, port) = split_host_port(host_part.trim())?;

    let mut url = format!("postgres://{}", utf8_percent_encode(user, URL_COMPONENT));
    if let Some(password) = password {
        url.push(':');
        url.extend(utf8_percent_encode(password, URL_COMPONENT));
    }
    url.push('@');
    url.push_str(host);
    url.push_str(&format!(":{port}/"));
    url.extend(utf8_percent_encode(db, URL_COMPONENT));
    // Catches host names the URL grammar rejects (spaces, stray brackets).
    if url::Url::parse(&url).is_err() {
        return Err(format!("invalid host \"{host}\" in the datasource"));
    }
    Ok(SystemDb::Postgres {
        url: Secret::new(url),
    })
}

fn split_host_port(host_part: &str) -> Result<(&str, u16), String> {
    let (host, port) = if host_part.starts_with('[') {
        let Some(close) = host_part.find(']') else {
            return Err("unterminated '[' in the datasource host".to_owned());
        };
        let port = host_part[close + 1..].strip_prefix(':');
        if port.is_none() && close + 1 != host_part.len() {
            return Err("unexpected text after ']' in the datasource host".to_owned());
        }
        (&host_part[..=close], port)
    } else {
        match host_part.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_part, None),
        }
    };
    if host.is_empty() {
        return Err(format!(
            "the datasource has no host: expected {DATASOURCE_FORM}"
        ));
    }
    let port = match port {
        None => DEFAULT_PG_PORT,
        Some(port) => match port.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(format!(
                    "bad port \"{}\" in the datasource: expected 1-65535",
                    port.trim()
                ))
            }
        },
    };
    Ok((host, port))
}

fn check_charset(charset: &str) -> Result<(), String> {
    let normalized = charset.to_ascii_lowercase().replace('-', "");
    if normalized == "utf8" {
        Ok(())
    } else {
        Err(format!(
            "charset \"{charset}\" is not supported: \
             Sluice always talks UTF-8 (utf8) to the database"
        ))
    }
}

/// Qorus's pool bounds are checked so a typo is caught, but not used: the store sizes its pool.
fn check_datasource_options(options: &str) -> Result<(), String> {
    let mut min = None;
    let mut max = None;
    for item in options.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "bad datasource option \"{item}\": expected {{min=N,max=N}}"
            ));
        };
        let key = key.trim();
        let slot = match key {
            "min" => &mut min,
            "max" => &mut max,
            other => {
                return Err(format!(
                    "unknown datasource option \"{other}\": \
                     only min and max (pool size) are accepted"
                ))
            }
        };
        match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => *slot = Some(n),
            _ => {
                return Err(format!(
                    "datasource option {key}: expected a positive integer, got \"{}\"",
                    value.trim()
                ))
            }
        }
    }
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(format!(
                "datasource option min={min} is larger than max={max}"
            ));
        }
    }
    Ok(())
}

/// The URL with its password (and any `password` parameter) replaced by `***`.
fn redacted_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        return "postgres://(invalid URL)".to_owned();
    };
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str(url.username());
        if url.password().is_some() {
            out.push_str(":***");
        }
        out.push('@');
    }
    out.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    let query: Vec<String> = url
        .query_pairs()
        .map(|(key, value)| {
            if key.to_ascii_lowercase().contains("password") {
                format!("{key}=***")
            } else {
                format!("{key}={value}")
            }
        })
        .collect();
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query.join("&"));
    }
    out
}

impl fmt::Display for SystemDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemDb::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            SystemDb::Postgres { url } => f.write_str(&redacted_url(url.expose())),
        }
    }
}

impl fmt::Debug for SystemDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Home {
        Home::new("/srv/omq")
    }

    fn postgres_url(db: &SystemDb) -> &str {
        match db {
            SystemDb::Postgres { url } => url.expose(),
            SystemDb::Sqlite { .. } => panic!("expected postgres, got {db}"),
        }
    }

    #[test]
    fn sqlite_paths_are_relative_to_omq_dir_unless_absolute() {
        let cases = [
            ("sqlite:$OMQ_DIR/var/sluice.db", "/srv/omq/var/sluice.db"),
            ("sqlite:${OMQ_DIR}/x.db", "/srv/omq/x.db"),
            ("sqlite:data/s.db", "/srv/omq/data/s.db"),
            ("sqlite://data/s.db", "/srv/omq/data/s.db"),
            ("sqlite:/abs/s.db", "/abs/s.db"),
            ("sqlite:///abs/s.db", "/abs/s.db"),
        ];
        for (value, path) in cases {
            let db = SystemDb::parse(value, &home()).unwrap();
            assert_eq!(
                db,
                SystemDb::Sqlite {
                    path: PathBuf::from(path)
                },
                "{value}"
            );
            assert_eq!(db.to_string(), format!("sqlite:{path}"));
        }
        assert!(SystemDb::parse("sqlite:", &home()).is_err());
        assert!(SystemDb::parse("sqlite::memory:", &home()).is_err());
    }

    #[test]
    fn postgres_url_is_kept_and_displayed_without_password() {
        let db = SystemDb::parse("postgres://u:p@h:5/db", &home()).unwrap();
        assert_eq!(postgres_url(&db), "postgres://u:p@h:5/db");
        assert_eq!(db.to_string(), "postgres://u:***@h:5/db");
        assert_eq!(format!("{db:?}"), "postgres://u:***@h:5/db");

        let db =
            SystemDb::parse("postgresql://u@h/db?password=p&sslmode=require", &home()).unwrap();
        assert_eq!(
            db.to_string(),
            "postgresql://u@h/db?password=***&sslmode=require"
        );
        let db = SystemDb::parse("postgres://[::1]:5433/db", &home()).unwrap();
        assert_eq!(db.to_string(), "postgres://[::1]:5433/db");
    }

    #[test]
    fn postgres_url_needs_a_host() {
        for value in ["postgres:///db", "postgres://", "postgres://:5432/db"] {
            let err = SystemDb::parse(value, &home()).unwrap_err();
            assert!(
                err.contains("no host") || err.contains("invalid PostgreSQL URL"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn qorus_datasource_becomes_a_url() {
        let db = SystemDb::parse("pgsql:omq/secret@omq%db.example.com:5432", &home()).unwrap();
        assert_eq!(
            postgres_url(&db),
            "postgres://omq:secret@db.example.com:5432/omq"
        );
        assert_eq!(db.to_string(), "postgres://omq:***@db.example.com:5432/omq");

        let db =
            SystemDb::parse("pgsql:omq/omq@omq(utf8)%localhost{min=1,max=5}", &home()).unwrap();
        assert_eq!(postgres_url(&db), "postgres://omq:omq@localhost:5432/omq");

        let db = SystemDb::parse("postgresql:omq@omq%[::1]:6000", &home()).unwrap();
        assert_eq!(postgres_url(&db), "postgres://omq@[::1]:6000/omq");
        assert_eq!(db.to_string(), "postgres://omq@[::1]:6000/omq");
    }

    #[test]
    fn datasource_credentials_are_percent_encoded() {
        let db = SystemDb::parse("pgsql:o m/p@ss:w/rd{x}@omq%h", &home()).unwrap();
        let url = postgres_url(&db);
        assert_eq!(url, "postgres://o%20m:p%40ss%3Aw%2Frd%7Bx%7D@h:5432/omq");
        let parsed = url::Url::parse(url).unwrap();
        assert_eq!(parsed.password(), Some("p%40ss%3Aw%2Frd%7Bx%7D"));
        assert_eq!(db.to_string(), "postgres://o%20m:***@h:5432/omq");
    }

    #[test]
    fn datasource_errors_are_specific_and_never_show_the_password() {
        let cases = [
            ("pgsql:omq/hunter2@omq", "no host"),
            ("pgsql:omq/hunter2@omq%", "no host"),
            ("pgsql:omq/hunter2@omq%h:0", "bad port"),
            ("pgsql:omq/hunter2@omq%h:70000", "bad port"),
            ("pgsql:omq/hunter2@omq(latin1)%h", "charset \"latin1\""),
            (
                "pgsql:omq/hunter2@omq%h{min=1,size=5}",
                "unknown datasource option \"size\"",
            ),
            ("pgsql:omq/hunter2@omq%h{min=9,max=5}", "larger than max"),
            (
                "pgsql:omq/hunter2@omq%h{min=x}",
                "expected a positive integer",
            ),
            ("pgsql:/hunter2@omq%h", "no user"),
            ("pgsql:omq/hunter2@%h", "no database name"),
            (
                "oracle:omq/hunter2@omq%h",
                "only pgsql (PostgreSQL) and sqlite are supported",
            ),
            (
                "mysql:omq/hunter2@omq%h",
                "only pgsql (PostgreSQL) and sqlite are supported",
            ),
            ("omq/hunter2@omq%h:5432", "expected sqlite:PATH"),
            ("hunter2", "expected sqlite:PATH"),
        ];
        for (value, expected) in cases {
            let err = SystemDb::parse(value, &home()).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
            assert!(!err.contains("hunter2"), "{value}: {err}");
        }
    }
}

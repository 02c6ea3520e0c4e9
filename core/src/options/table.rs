//! The option table: every option's name, kind, default and description, once. Parsing,
//! defaults, `sluice options` and `docs/options.md` are all derived from it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::audit::{parse_audit, render_audit, AuditCode};
use super::listeners::{parse_listeners, HttpListener};
use super::resolve_path;
use super::systemdb::SystemDb;
use crate::home::Home;

/// How an option's value is written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// true/false, yes/no, on/off or 1/0, in any case.
    Bool,
    /// An integer ≥ 0.
    Integer,
    /// An integer ≥ 1.
    PositiveInteger,
    /// Any text; empty means unset.
    String,
    /// A non-empty word without whitespace.
    Identifier,
    /// A file or directory; relative to `$OMQ_DIR` unless absolute.
    Path,
    /// See [`SystemDb::parse`].
    SystemDb,
    /// Plain HTTP listeners.
    HttpListeners,
    /// HTTPS listeners, each with `{cert=FILE;key=FILE}`.
    HttpsListeners,
    /// `*` or a comma-separated list of [`AuditCode`]s.
    AuditCodes,
    /// A comma-separated list of ZeroMQ endpoints, `tcp://HOST:PORT` or `ipc://PATH`.
    Endpoints,
}

impl OptionKind {
    /// The kind's name in `sluice options` and `docs/options.md`.
    pub fn label(self) -> &'static str {
        match self {
            OptionKind::Bool => "bool",
            OptionKind::Integer => "integer",
            OptionKind::PositiveInteger => "integer > 0",
            OptionKind::String => "string",
            OptionKind::Identifier => "name",
            OptionKind::Path => "path",
            OptionKind::SystemDb => "database",
            OptionKind::HttpListeners => "listeners",
            OptionKind::HttpsListeners => "TLS listeners",
            OptionKind::AuditCodes => "audit codes",
            OptionKind::Endpoints => "endpoints",
        }
    }

    /// Checks and converts a (trimmed) value. The message says what was expected.
    pub(crate) fn parse(self, value: &str, home: &Home) -> Result<Value, String> {
        Ok(match self {
            OptionKind::Bool => Value::Bool(parse_bool(value)?),
            OptionKind::Integer => match value.parse::<u64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => return Err(format!("expected an integer >= 0, got \"{value}\"")),
            },
            OptionKind::PositiveInteger => match value.parse::<u64>() {
                Ok(n) if n > 0 => Value::Integer(n),
                _ => return Err(format!("expected a positive integer, got \"{value}\"")),
            },
            OptionKind::String => Value::Text(value.to_owned()),
            OptionKind::Identifier => {
                if value.is_empty() || value.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "expected a non-empty name without spaces, got \"{value}\""
                    ));
                }
                Value::Text(value.to_owned())
            }
            OptionKind::Path => {
                if value.is_empty() {
                    return Err("expected a path, got an empty value".to_owned());
                }
                Value::Path(resolve_path(value, home))
            }
            OptionKind::SystemDb => Value::SystemDb(SystemDb::parse(value, home)?),
            OptionKind::HttpListeners => Value::Listeners(parse_listeners(value, home, false)?),
            OptionKind::HttpsListeners => Value::Listeners(parse_listeners(value, home, true)?),
            OptionKind::AuditCodes => Value::Audit(parse_audit(value)?),
            OptionKind::Endpoints => Value::List(parse_endpoints(value)?),
        })
    }
}

fn parse_endpoints(value: &str) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let valid = match entry.split_once("://") {
            Some(("tcp", rest)) => rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
            Some(("ipc", rest)) => !rest.is_empty(),
            _ => false,
        };
        if !valid {
            return Err(format!(
                "expected endpoints like tcp://127.0.0.1:8002 or ipc:///path, got \"{entry}\""
            ));
        }
        endpoints.push(entry.to_owned());
    }
    Ok(endpoints)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "expected true or false (or yes/no, on/off, 1/0), got \"{value}\""
        )),
    }
}

/// A parsed option value; which variant follows from the row's [`OptionKind`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    Integer(u64),
    Text(String),
    Path(PathBuf),
    SystemDb(SystemDb),
    Listeners(Vec<HttpListener>),
    Audit(BTreeSet<AuditCode>),
    List(Vec<String>),
}

impl Value {
    /// The value as an operator would write it, secrets redacted.
    pub(crate) fn render(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Integer(n) => n.to_string(),
            Value::Text(s) => s.clone(),
            Value::Path(p) => p.display().to_string(),
            Value::SystemDb(db) => db.to_string(),
            Value::Listeners(listeners) => listeners
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Value::Audit(codes) => render_audit(codes),
            Value::List(items) => items.join(","),
        }
    }
}

/// One row of the option table.
#[derive(Debug, Clone)]
pub struct OptionDef {
    /// Without the `qorus.` prefix.
    pub name: &'static str,
    pub kind: OptionKind,
    /// As written in the options file, `$OMQ_DIR` unexpanded; empty means unset.
    pub default: &'static str,
    /// Read once when the master starts; changing it later needs a restart.
    pub startup_only: bool,
    pub description: &'static str,
    qualified_name: &'static str,
}

impl OptionDef {
    /// The name as written in the options file: `qorus.NAME`.
    pub fn qualified_name(&self) -> &'static str {
        self.qualified_name
    }
}

/// Builds a row; the `qorus.`-prefixed name is derived here so it cannot drift from `name`.
macro_rules! option {
    (
        name: $name:literal,
        kind: $kind:ident,
        default: $default:literal,
        startup_only: $startup_only:literal,
        description: $description:literal $(,)?
    ) => {
        OptionDef {
            name: $name,
            kind: OptionKind::$kind,
            default: $default,
            startup_only: $startup_only,
            description: $description,
            qualified_name: concat!("qorus.", $name),
        }
    };
}

static TABLE: &[OptionDef] = &[
    option! {
        name: "instance-key",
        kind: Identifier,
        default: "qorus-test-instance",
        startup_only: true,
        description: "Unique id of this instance: guards against starting it twice and names \
                      its application session, which a restart recovers after a crash.",
    },
    option! {
        name: "logdir",
        kind: Path,
        default: "$OMQ_DIR/log",
        startup_only: true,
        description: "Directory the log files are written to; the user running Sluice must be \
                      able to write to it.",
    },
    option! {
        name: "systemdb",
        kind: SystemDb,
        default: "sqlite:$OMQ_DIR/var/sluice.db",
        startup_only: true,
        description: "System database: sqlite:PATH, postgres://USER:PASS@HOST:PORT/DB, or \
                      Qorus's pgsql:USER/PASS@DB(utf8)%HOST:PORT{min=N,max=N} (min and max \
                      are checked, then left to Sluice's own pool sizing).",
    },
    option! {
        name: "network-key",
        kind: Path,
        default: "$OMQ_DIR/etc/cluster.key",
        startup_only: true,
        description: "File holding the cluster's CURVE server secret key (32 raw bytes, mode \
                      0600); every process's bus sockets use it.",
    },
    option! {
        name: "http-server",
        kind: HttpListeners,
        default: "",
        startup_only: true,
        description: "Plain HTTP listeners: comma-separated [HOST:]PORT, HOST an IPv4 address, \
                      a host name or [IPv6]; when neither this nor qorus.http-secure-server is \
                      set, Sluice listens on port 8001 on all interfaces.",
    },
    option! {
        name: "http-secure-server",
        kind: HttpsListeners,
        default: "",
        startup_only: true,
        description: "HTTPS listeners: comma-separated [HOST:]PORT{cert=FILE;key=FILE}; key \
                      defaults to the cert file (one PEM holding both); key-password is not \
                      supported, so the key file must be unencrypted.",
    },
    option! {
        name: "cors-enable",
        kind: Bool,
        default: "false",
        startup_only: true,
        description: "Answer cross-origin (CORS) requests at the HTTP gateway, so that web \
                      pages of any origin may call the REST API from a browser; off, no CORS \
                      headers are sent and browsers refuse such calls.",
    },
    option! {
        name: "http-max-connections-per-address",
        kind: PositiveInteger,
        default: "256",
        startup_only: true,
        description: "Connections one client address may have open at once on each HTTP \
                      gateway listener; past it a new connection is answered 503 with \
                      Retry-After and closed (HTTPS: closed before the TLS handshake). A \
                      reverse proxy or NAT in front of the gateway counts as one address.",
    },
    option! {
        name: "autostart-interfaces",
        kind: Bool,
        default: "true",
        startup_only: false,
        description: "Start the workflows, services and jobs marked autostart; false leaves \
                      every interface stopped until an operator starts it.",
    },
    option! {
        name: "rbac-security",
        kind: Bool,
        default: "false",
        startup_only: true,
        description: "Role-based access control: every request must authenticate, and may do \
                      only what its user's roles permit.",
    },
    option! {
        name: "rbac-force-user",
        kind: String,
        default: "",
        startup_only: false,
        description: "User that unauthenticated local requests run as; empty: none.",
    },
    option! {
        name: "audit",
        kind: AuditCodes,
        default: "",
        startup_only: false,
        description: "What is recorded in audit_events: * for everything, or a comma-separated \
                      list of alerts, api, code, groups, jobs, job-data, oload, services, \
                      system, user-events, workflow-data, workflows.",
    },
    option! {
        name: "max-events",
        kind: PositiveInteger,
        default: "10000",
        startup_only: false,
        description: "System events kept in the master's in-memory event sink; the oldest are \
                      dropped first.",
    },
    option! {
        name: "cluster-api",
        kind: Endpoints,
        default: "tcp://127.0.0.1:8002",
        startup_only: true,
        description: "Where the master serves the cluster API (ZeroMQ with CURVE) to external \
                      clients whose keys are registered with `sluice keys register`.",
    },
    option! {
        name: "master-grace",
        kind: PositiveInteger,
        default: "60",
        startup_only: true,
        description: "Seconds a child process keeps running without a master; a master started \
                      again within this time adopts it, after it the child stops cleanly.",
    },
    option! {
        name: "process-restart-limit",
        kind: PositiveInteger,
        default: "5",
        startup_only: false,
        description: "Crashes of one process within qorus.process-restart-window after which \
                      the master stops restarting it, marks it failed and raises an event.",
    },
    option! {
        name: "process-restart-window",
        kind: PositiveInteger,
        default: "60",
        startup_only: false,
        description: "Seconds over which crashes count toward qorus.process-restart-limit.",
    },
    option! {
        name: "process-restart-delay",
        kind: PositiveInteger,
        default: "250",
        startup_only: false,
        description: "Milliseconds before the first restart of a crashed process; each further \
                      crash in the window doubles it, up to 30 seconds.",
    },
    option! {
        name: "recover_delay",
        kind: PositiveInteger,
        default: "60",
        startup_only: false,
        description: "Seconds before a workflow order in RETRY runs again, for errors that \
                      declare no retry delay of their own.",
    },
    option! {
        name: "max-retries",
        kind: PositiveInteger,
        default: "20",
        startup_only: false,
        description: "Retries of one step after which a retry error becomes ERROR and the \
                      order waits for an operator.",
    },
    option! {
        name: "python-executable",
        kind: String,
        default: "python3",
        startup_only: false,
        description: "The Python interpreter that runs interface code (a name looked up in \
                      PATH, or a path).",
    },
];

/// Every option, in the order the documentation lists them.
pub fn table() -> &'static [OptionDef] {
    TABLE
}

/// Finds a row by its name without the `qorus.` prefix.
pub fn find(name: &str) -> Option<&'static OptionDef> {
    TABLE.iter().find(|def| def.name == name)
}

const NONE: &str = "(none)";

/// The table as `sluice options` prints it: aligned columns, one option a line.
pub fn render_text() -> String {
    let header = ["OPTION", "TYPE", "DEFAULT", "STARTUP-ONLY", "DESCRIPTION"];
    let rows: Vec<[&str; 5]> = TABLE
        .iter()
        .map(|def| {
            [
                def.qualified_name,
                def.kind.label(),
                if def.default.is_empty() {
                    NONE
                } else {
                    def.default
                },
                if def.startup_only { "yes" } else { "no" },
                def.description,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Escapes what Markdown would otherwise read as table structure or emphasis.
fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '|' | '*' | '_' | '`' | '<' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `docs/options.md`, byte for byte.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Options\n\
         \n\
         <!-- Generated from the option table in core/src/options/table.rs: edit the table, \
         then run `SLUICE_BLESS=1 cargo test -p sluice-core docs_options_md_is_current`. -->\n\
         \n\
         Sluice reads its options from `$OMQ_DIR/etc/options`, in Qorus's format: one \
         `qorus.NAME: VALUE` (or `qorus.NAME = VALUE`) per line, where the first `:` or `=` \
         ends the name and the value may contain more of both (URLs do); everything from a `#` \
         to the end of the line is a comment, so a value cannot contain `#`; blank lines are \
         ignored; when an option appears twice, the later line wins. `qorus-client.NAME: VALUE` \
         lines are client options, which the server keeps but ignores. In paths, `$OMQ_DIR` and \
         `${OMQ_DIR}` stand for the instance home, and a relative path is relative to it. An \
         unknown option, a malformed line or a bad value stops the process with an error \
         naming the file, line and option. Arguments `qorus.NAME=VALUE` on the \
         command line override the file, in order, with the same checks. A missing options \
         file means every default. Options marked startup only take effect when the master \
         starts; the others may also be changed while Sluice runs, with \
         `omq.system.set-option` (`PUT /api/latest/system/options/NAME?action=set`), until \
         the master stops ([cluster-api.md](cluster-api.md#options)).\n\
         \n\
         | Option | Type | Default | Startup only | Description |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for def in TABLE {
        let default = if def.default.is_empty() {
            NONE.to_owned()
        } else {
            format!("`{}`", def.default)
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            def.qualified_name,
            def.kind.label(),
            default,
            if def.startup_only { "yes" } else { "no" },
            markdown_text(def.description),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_described_and_its_default_parses() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let mut names = BTreeSet::new();
        for def in table() {
            assert!(names.insert(def.name), "qorus.{} twice", def.name);
            assert!(!def.description.trim().is_empty(), "qorus.{}", def.name);
            assert!(!def.name.starts_with("qorus."), "{}", def.name);
            assert_eq!(def.qualified_name(), format!("qorus.{}", def.name));
            assert_eq!(find(def.name).map(|d| d.name), Some(def.name));
            if let Err(e) = def.kind.parse(def.default, &home) {
                panic!("default of qorus.{} does not parse: {e}", def.name);
            }
        }
    }

    #[test]
    fn audit_description_lists_every_code() {
        let audit = find("audit").unwrap();
        for code in AuditCode::ALL {
            assert!(audit.description.contains(code.as_str()), "{code}");
        }
    }

    #[test]
    fn bools_accept_qorus_spellings() {
        for (value, expected) in [
            ("True", true),
            ("yes", true),
            ("ON", true),
            ("1", true),
            ("false", false),
            ("No", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(value), Ok(expected), "{value}");
        }
        let err = parse_bool("maybe").unwrap_err();
        assert!(err.contains("got \"maybe\""), "{err}");
    }

    #[test]
    fn integers() {
        let home = Home::new("/omq");
        assert_eq!(OptionKind::Integer.parse("0", &home), Ok(Value::Integer(0)));
        assert!(OptionKind::Integer.parse("-1", &home).is_err());
        assert!(OptionKind::PositiveInteger.parse("0", &home).is_err());
        assert_eq!(
            OptionKind::PositiveInteger.parse("7", &home),
            Ok(Value::Integer(7))
        );
    }

    #[test]
    fn text_table_is_aligned_and_complete() {
        let text = render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), table().len() + 1);
        let description_column = lines[0].find("DESCRIPTION").unwrap();
        for (line, def) in lines[1..].iter().zip(table()) {
            assert!(line.starts_with(def.qualified_name()), "{line}");
            assert_eq!(
                line.find(def.description),
                Some(description_column),
                "{line}"
            );
        }
        assert!(text.contains("$OMQ_DIR/etc/cluster.key"));
    }

    #[test]
    fn markdown_table_has_a_row_per_option() {
        let md = render_markdown();
        assert!(md.starts_with("# Options\n"));
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `qorus.")).collect();
        assert_eq!(rows.len(), table().len());
        for row in rows {
            // Five cells: escaped pipes must not add any.
            assert_eq!(row.replace("\\|", "").matches('|').count(), 6, "{row}");
        }
        assert!(
            md.contains("| `qorus.systemdb` | database | `sqlite:$OMQ_DIR/var/sluice.db` | yes |")
        );
        assert!(md.contains("\\* for everything"));
    }

    #[test]
    fn docs_options_md_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/options.md");
        let expected = render_markdown();
        if std::env::var("SLUICE_BLESS").as_deref() == Ok("1") {
            std::fs::write(path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/options.md is out of date: run \
             `SLUICE_BLESS=1 cargo test -p sluice-core docs_options_md_is_current`"
        );
    }
}

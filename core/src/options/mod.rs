//! The typed option table and the `$OMQ_DIR/etc/options` parser.
//!
//! The file is Qorus's: `qorus.NAME: VALUE` or `qorus.NAME = VALUE` lines, `#` comments,
//! `qorus-client.NAME: VALUE` client options that the server keeps but ignores. Every
//! option is a row of [`table()`]; nothing else lists option names.

mod audit;
mod listeners;
mod live;
mod systemdb;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use audit::AuditCode;
pub use listeners::{HttpListener, TlsFiles, DEFAULT_HTTP_PORT};
pub use live::{LiveOptions, SetOptionError};
pub use systemdb::SystemDb;
pub use table::{find, render_markdown, render_text, table, OptionDef, OptionKind};

use crate::home::Home;
use table::Value;

/// Where command-line overrides are said to come from in errors.
const COMMAND_LINE: &str = "command line";
const SYNTAX: &str =
    "syntax error: expected qorus.NAME: VALUE, qorus.NAME = VALUE or qorus-client.NAME: VALUE";

/// A problem with the options. `Display` is what the operator sees: `FILE:LINE: message`.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// A malformed line, an unknown option or a bad value.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The options file, or `command line` for an override.
        file: String,
        /// 1-based line in the file, or position among the overrides.
        line: usize,
        message: String,
    },
    /// The options file exists but cannot be read.
    #[error("cannot read options file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The parsed options of one instance: every option of the table has a value (its default
/// unless the file or an override set it).
#[derive(Clone)]
pub struct Options {
    home: Home,
    values: BTreeMap<&'static str, Value>,
    client: BTreeMap<String, String>,
    overrides_applied: usize,
}

/// Makes a value that names a file absolute: `$OMQ_DIR` expanded, and a relative path taken
/// under the home, so the meaning does not depend on the directory the process starts in.
pub(crate) fn resolve_path(raw: &str, home: &Home) -> PathBuf {
    let expanded = PathBuf::from(home.expand(raw));
    if expanded.is_absolute() || raw.starts_with("$OMQ_DIR") || raw.starts_with("${OMQ_DIR}") {
        expanded
    } else {
        home.root().join(expanded)
    }
}

impl Options {
    /// Reads `home.options_file()` (a missing file means every default), then applies the
    /// command-line `overrides` in order.
    pub fn load(home: &Home, overrides: &[String]) -> Result<Options, OptionsError> {
        let path = home.options_file();
        let mut options = match std::fs::read_to_string(&path) {
            Ok(text) => Options::parse(&text, &path, home)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Options::defaults(home)?,
            Err(source) => return Err(OptionsError::Read { path, source }),
        };
        for arg in overrides {
            options.apply_override(arg)?;
        }
        Ok(options)
    }

    /// Parses the text of an options file; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path, home: &Home) -> Result<Options, OptionsError> {
        let mut options = Options::defaults(home)?;
        let file = file.display().to_string();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let content = raw.split('#').next().unwrap_or_default().trim();
            if !content.is_empty() {
                options.apply_line(content, &file, index + 1)?;
            }
        }
        Ok(options)
    }

    /// Applies one command-line argument `qorus.NAME=VALUE` (or `qorus.NAME:VALUE`). Errors
    /// name `command line` and the argument's 1-based position among the overrides applied.
    pub fn apply_override(&mut self, arg: &str) -> Result<(), OptionsError> {
        self.overrides_applied += 1;
        // No comment stripping: the shell already separated the argument, and a `#` in it
        // is meant.
        self.apply_line(arg.trim(), COMMAND_LINE, self.overrides_applied)
    }

    /// Sets one option by its name without the `qorus.` prefix, with the same checks as the
    /// file. The error is the message without a location. Whether a startup-only option may
    /// change now is the caller's decision.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let Some(def) = find(name) else {
            return Err(match suggest(name) {
                Some(known) => format!("unknown option qorus.{name} (did you mean {known}?)"),
                None => format!("unknown option qorus.{name}"),
            });
        };
        let value = def
            .kind
            .parse(value.trim(), &self.home)
            .map_err(|message| format!("{}: {message}", def.qualified_name()))?;
        self.values.insert(def.name, value);
        Ok(())
    }

    fn defaults(home: &Home) -> Result<Options, OptionsError> {
        let mut values = BTreeMap::new();
        for def in table() {
            // Only a broken table row (caught by the table's tests) or a home path that
            // breaks a default could fail here; report it rather than panic.
            let value =
                def.kind
                    .parse(def.default, home)
                    .map_err(|message| OptionsError::Invalid {
                        file: "built-in defaults".to_owned(),
                        line: 0,
                        message: format!("{}: {message}", def.qualified_name()),
                    })?;
            values.insert(def.name, value);
        }
        Ok(Options {
            home: home.clone(),
            values,
            client: BTreeMap::new(),
            overrides_applied: 0,
        })
    }

    fn apply_line(&mut self, content: &str, file: &str, line: usize) -> Result<(), OptionsError> {
        let invalid = |message: String| OptionsError::Invalid {
            file: file.to_owned(),
            line,
            message,
        };
        let (is_client, rest) = if let Some(rest) = content.strip_prefix("qorus-client.") {
            (true, rest)
        } else if let Some(rest) = content.strip_prefix("qorus.") {
            (false, rest)
        } else {
            return Err(invalid(syntax_error(content)));
        };
        let Some((name, value)) = rest.split_once([':', '=']) else {
            return Err(invalid(SYNTAX.to_owned()));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(invalid(SYNTAX.to_owned()));
        }
        if is_client {
            self.client.insert(name.to_owned(), value.to_owned());
            return Ok(());
        }
        self.set(name, value).map_err(invalid)
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn instance_key(&self) -> &str {
        self.text("instance-key")
    }

    /// The master's local socket `what` (`master`: control, `events`: the PUB), an
    /// `ipc://` path under `$OMQ_DIR/var`, stable across restarts so children find it.
    pub fn local_endpoint(&self, what: &str) -> String {
        format!(
            "ipc://{}/{}.{what}.ipc",
            self.home().var_dir().display(),
            self.instance_key()
        )
    }

    pub fn logdir(&self) -> PathBuf {
        self.path("logdir")
    }

    pub fn systemdb(&self) -> SystemDb {
        match self.values.get("systemdb") {
            Some(Value::SystemDb(db)) => db.clone(),
            other => row_bug("systemdb", other),
        }
    }

    pub fn network_key(&self) -> PathBuf {
        self.path("network-key")
    }

    /// The HTTPS listeners, then the plain ones; Qorus's default (plain HTTP on port 8001,
    /// all interfaces) when neither option names any.
    pub fn http_listeners(&self) -> Vec<HttpListener> {
        let mut listeners = self.listeners("http-secure-server").to_vec();
        listeners.extend_from_slice(self.listeners("http-server"));
        if listeners.is_empty() {
            listeners.push(HttpListener::default_plain());
        }
        listeners
    }

    /// `qorus.cors-enable`: the gateway answers cross-origin requests.
    pub fn cors_enable(&self) -> bool {
        self.bool("cors-enable")
    }

    /// `qorus.http-max-connections-per-address`: open connections one client address may
    /// have on one gateway listener.
    pub fn http_max_connections_per_address(&self) -> usize {
        usize::try_from(self.integer("http-max-connections-per-address")).unwrap_or(usize::MAX)
    }

    pub fn autostart_interfaces(&self) -> bool {
        self.bool("autostart-interfaces")
    }

    pub fn rbac_security(&self) -> bool {
        self.bool("rbac-security")
    }

    /// The user unauthenticated local requests run as; `None` when unset.
    pub fn rbac_force_user(&self) -> Option<&str> {
        Some(self.text("rbac-force-user")).filter(|user| !user.is_empty())
    }

    pub fn audit(&self) -> &BTreeSet<AuditCode> {
        match self.values.get("audit") {
            Some(Value::Audit(codes)) => codes,
            other => row_bug("audit", other),
        }
    }

    pub fn audits(&self, code: AuditCode) -> bool {
        self.audit().contains(&code)
    }

    pub fn max_events(&self) -> usize {
        usize::try_from(self.integer("max-events")).unwrap_or(usize::MAX)
    }

    /// Endpoints of the cluster API (`qorus.cluster-api`).
    pub fn cluster_api(&self) -> &[String] {
        self.list("cluster-api")
    }

    pub fn master_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.integer("master-grace"))
    }

    /// The crash-loop policy: at most `limit` crashes in `window`, restarts delayed from
    /// `delay` doubling per crash.
    pub fn restart_policy(&self) -> (u32, std::time::Duration, std::time::Duration) {
        (
            u32::try_from(self.integer("process-restart-limit")).unwrap_or(u32::MAX),
            std::time::Duration::from_secs(self.integer("process-restart-window")),
            std::time::Duration::from_millis(self.integer("process-restart-delay")),
        )
    }

    /// How long an order in RETRY waits when its error declares no delay.
    pub fn recover_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.integer("recover_delay"))
    }

    /// Retries of one step before a retry error becomes ERROR.
    pub fn max_retries(&self) -> u64 {
        self.integer("max-retries")
    }

    /// The interpreter interface code runs in.
    pub fn python_executable(&self) -> &str {
        self.text("python-executable")
    }

    /// `qorus-client.NAME` options by NAME; the server never interprets them.
    pub fn client_options(&self) -> &BTreeMap<String, String> {
        &self.client
    }

    /// Every option as `(qorus.NAME, value)` in table order, passwords redacted: what the
    /// master logs at startup.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        table()
            .iter()
            .map(|def| {
                let value = self
                    .values
                    .get(def.name)
                    .map(Value::render)
                    .unwrap_or_default();
                (def.qualified_name(), value)
            })
            .collect()
    }

    fn bool(&self, name: &'static str) -> bool {
        match self.values.get(name) {
            Some(Value::Bool(b)) => *b,
            other => row_bug(name, other),
        }
    }

    fn integer(&self, name: &'static str) -> u64 {
        match self.values.get(name) {
            Some(Value::Integer(n)) => *n,
            other => row_bug(name, other),
        }
    }

    fn text(&self, name: &'static str) -> &str {
        match self.values.get(name) {
            Some(Value::Text(s)) => s,
            other => row_bug(name, other),
        }
    }

    fn path(&self, name: &'static str) -> PathBuf {
        match self.values.get(name) {
            Some(Value::Path(p)) => p.clone(),
            other => row_bug(name, other),
        }
    }

    fn list(&self, name: &'static str) -> &[String] {
        match self.values.get(name) {
            Some(Value::List(l)) => l,
            other => row_bug(name, other),
        }
    }

    fn listeners(&self, name: &'static str) -> &[HttpListener] {
        match self.values.get(name) {
            Some(Value::Listeners(l)) => l,
            other => row_bug(name, other),
        }
    }
}

/// Every row gets a value when `Options` is built, so an accessor only lands here if its
/// name or kind disagrees with the table: a programming error, which
/// `every_accessor_matches_its_row` catches.
fn row_bug(name: &str, found: Option<&Value>) -> ! {
    panic!("accessor for qorus.{name} disagrees with the option table (found {found:?})")
}

/// Client options and the override position may carry secrets; show names only.
impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("home", &self.home)
            .field("values", &self.describe())
            .field("client_options", &self.client.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The syntax error for a line without a known prefix. It never quotes the line (it may be a
/// stray password), only a known option name when the prefix was simply forgotten.
fn syntax_error(content: &str) -> String {
    let head = content.split([':', '=']).next().unwrap_or_default().trim();
    let bare = head
        .strip_prefix("qorus-")
        .or_else(|| head.strip_prefix("qorus_"))
        .unwrap_or(head);
    match find(bare) {
        Some(def) => format!("{SYNTAX} (did you mean {}?)", def.qualified_name()),
        None => SYNTAX.to_owned(),
    }
}

/// The known option closest to an unknown name, if it is close enough to be a typo.
fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    table()
        .iter()
        .map(|def| (edit_distance(&name, def.name), def))
        .filter(|(distance, def)| *distance <= (def.name.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, def)| def.qualified_name())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        home: Home,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let home = Home::new(dir.path());
        Fixture { dir, home }
    }

    fn parse(fx: &Fixture, text: &str) -> Result<Options, OptionsError> {
        Options::parse(text, &fx.home.options_file(), &fx.home)
    }

    fn error(fx: &Fixture, text: &str) -> (usize, String) {
        match parse(fx, text) {
            Err(OptionsError::Invalid {
                file,
                line,
                message,
            }) => {
                assert_eq!(file, fx.home.options_file().display().to_string());
                (line, message)
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_without_a_file() {
        let fx = fixture();
        let options = Options::load(&fx.home, &[]).unwrap();
        let root = fx.dir.path();
        assert_eq!(options.instance_key(), "qorus-test-instance");
        assert_eq!(options.logdir(), root.join("log"));
        assert_eq!(options.network_key(), root.join("etc/cluster.key"));
        assert_eq!(
            options.systemdb(),
            SystemDb::Sqlite {
                path: root.join("var/sluice.db")
            }
        );
        assert_eq!(
            options.http_listeners(),
            vec![HttpListener {
                host: None,
                port: 8001,
                tls: None
            }]
        );
        assert!(options.autostart_interfaces());
        assert!(!options.rbac_security());
        assert_eq!(options.rbac_force_user(), None);
        assert!(options.audit().is_empty());
        assert!(!options.audits(AuditCode::Jobs));
        assert_eq!(options.max_events(), 10000);
        assert!(options.client_options().is_empty());
    }

    #[test]
    fn relative_home_is_not_joined_twice() {
        let home = Home::new("var/omq");
        let options = Options::parse("", Path::new("options"), &home).unwrap();
        assert_eq!(options.logdir(), PathBuf::from("var/omq/log"));
        let options = Options::parse("qorus.logdir: logs", Path::new("options"), &home).unwrap();
        assert_eq!(options.logdir(), PathBuf::from("var/omq/logs"));
    }

    #[test]
    fn every_accessor_matches_its_row() {
        let fx = fixture();
        let options = parse(
            &fx,
            "qorus.instance-key: a\nqorus.logdir: /l\nqorus.systemdb: sqlite:/d\n\
             qorus.network-key: /k\nqorus.http-server: 1\nqorus.autostart-interfaces: no\n\
             qorus.rbac-security: yes\nqorus.rbac-force-user: admin\nqorus.audit: *\n\
             qorus.max-events: 5\nqorus.cluster-api: tcp://0.0.0.0:9002,ipc:///tmp/x\n\
             qorus.master-grace: 7\nqorus.process-restart-limit: 3\n\
             qorus.process-restart-window: 9\nqorus.process-restart-delay: 100\n",
        )
        .unwrap();
        assert_eq!(
            options.cluster_api(),
            ["tcp://0.0.0.0:9002", "ipc:///tmp/x"]
        );
        assert_eq!(options.master_grace(), std::time::Duration::from_secs(7));
        assert_eq!(
            options.restart_policy(),
            (
                3,
                std::time::Duration::from_secs(9),
                std::time::Duration::from_millis(100)
            )
        );
        assert_eq!(options.instance_key(), "a");
        assert_eq!(options.logdir(), PathBuf::from("/l"));
        assert_eq!(options.systemdb().to_string(), "sqlite:/d");
        assert_eq!(options.network_key(), PathBuf::from("/k"));
        assert_eq!(options.http_listeners()[0].port, 1);
        assert!(!options.autostart_interfaces());
        assert!(options.rbac_security());
        assert_eq!(options.rbac_force_user(), Some("admin"));
        assert!(AuditCode::ALL.into_iter().all(|c| options.audits(c)));
        assert_eq!(options.max_events(), 5);
        assert_eq!(options.describe().len(), table().len());
    }

    #[test]
    fn bad_endpoints_are_refused() {
        let fx = fixture();
        for bad in ["8002", "tcp://:8002", "tcp://h:port", "udp://h:1", "ipc://"] {
            let err = parse(&fx, &format!("qorus.cluster-api: {bad}\n")).unwrap_err();
            assert!(
                err.to_string().contains("expected endpoints"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn both_separators_comments_and_blank_lines() {
        let fx = fixture();
        let options = parse(
            &fx,
            "# a comment line\n\
             \n\
             qorus.instance-key: bss-uat-1   # trailing comment\n\
             \t   \n\
             qorus.max-events = 42\n\
             qorus.rbac-force-user=ops#no space before the comment\n\
             qorus.systemdb: postgres://u:p=q@h:5432/db\n\
             \t# indented comment\r\n",
        )
        .unwrap();
        assert_eq!(options.instance_key(), "bss-uat-1");
        assert_eq!(options.max_events(), 42);
        assert_eq!(options.rbac_force_user(), Some("ops"));
        // Only the first separator splits: the value keeps its own ':' and '='.
        match options.systemdb() {
            SystemDb::Postgres { url } => assert_eq!(url.expose(), "postgres://u:p=q@h:5432/db"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn client_options_are_kept_and_not_validated() {
        let fx = fixture();
        let options = parse(
            &fx,
            "qorus-client.proxy-url: http://user:pass@192.168.25.7:8080\n\
             qorus-client.anything-at-all = whatever\n",
        )
        .unwrap();
        let client = options.client_options();
        assert_eq!(
            client.get("proxy-url").map(String::as_str),
            Some("http://user:pass@192.168.25.7:8080")
        );
        assert_eq!(
            client.get("anything-at-all").map(String::as_str),
            Some("whatever")
        );
        // The server's own options are untouched, and Debug shows no client value.
        assert_eq!(options.instance_key(), "qorus-test-instance");
        assert!(!format!("{options:?}").contains("user:pass"));
    }

    #[test]
    fn unknown_option_names_line_and_suggests() {
        let fx = fixture();
        let (line, message) = error(
            &fx,
            "# header\nqorus.logdir: /var/log/x\n\nqorus.instance-kye: x\n",
        );
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "unknown option qorus.instance-kye (did you mean qorus.instance-key?)"
        );
        let err = parse(&fx, "qorus.instance-kye: x").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:1: unknown option qorus.instance-kye (did you mean qorus.instance-key?)",
                fx.home.options_file().display()
            )
        );
        let (_, message) = error(&fx, "qorus.totally-different: x");
        assert_eq!(message, "unknown option qorus.totally-different");
        let (_, message) = error(&fx, "qorus.Max_Events: 3");
        assert_eq!(
            message,
            "unknown option qorus.Max_Events (did you mean qorus.max-events?)"
        );
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let fx = fixture();
        let (line, message) = error(&fx, "\nqorus.max-events: ten\n");
        assert_eq!(line, 2);
        assert_eq!(
            message,
            "qorus.max-events: expected a positive integer, got \"ten\""
        );
        let (_, message) = error(&fx, "qorus.max-events: 0");
        assert!(message.contains("expected a positive integer"), "{message}");
        let (_, message) = error(&fx, "qorus.rbac-security: maybe");
        assert!(
            message.starts_with("qorus.rbac-security: expected true or false"),
            "{message}"
        );
        let (_, message) = error(&fx, "qorus.instance-key: two words");
        assert!(message.starts_with("qorus.instance-key: "), "{message}");
        let (_, message) = error(&fx, "qorus.instance-key:");
        assert!(message.starts_with("qorus.instance-key: "), "{message}");
        let (_, message) = error(&fx, "qorus.audit: jobs,bogus");
        assert!(
            message.starts_with("qorus.audit: unknown audit code \"bogus\""),
            "{message}"
        );
        assert!(message.contains("workflow-data"), "{message}");
        let (_, message) = error(&fx, "qorus.http-server: 70000");
        assert!(message.contains("bad port \"70000\""), "{message}");
        let (_, message) = error(&fx, "qorus.systemdb: oracle:omq/omq@omq%h");
        assert!(
            message.contains("only pgsql (PostgreSQL) and sqlite are supported"),
            "{message}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line_and_never_quote_it() {
        let fx = fixture();
        for (text, line) in [
            ("qorus.instance-key: a\nthis is not an option\n", 2),
            ("qorus.instance-key bss\n", 1),
            ("\n\nqorus.: x\n", 3),
            ("qorus-client.: x\n", 1),
            ("other.instance-key: x\n", 1),
            ("postgres://u:hunter2@h/db\n", 1),
        ] {
            let (got, message) = error(&fx, text);
            assert_eq!(got, line, "{text:?}");
            assert!(message.starts_with("syntax error"), "{text:?}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let (_, message) = error(&fx, "instance-key: x");
        assert!(
            message.ends_with("(did you mean qorus.instance-key?)"),
            "{message}"
        );
    }

    #[test]
    fn later_duplicate_wins() {
        let fx = fixture();
        let options = parse(
            &fx,
            "qorus.instance-key: first\nqorus.instance-key = second\n",
        )
        .unwrap();
        assert_eq!(options.instance_key(), "second");
    }

    #[test]
    fn command_line_overrides_the_file() {
        let fx = fixture();
        std::fs::write(
            fx.home.options_file(),
            "qorus.instance-key: from-file\nqorus.max-events: 7\nqorus.audit: jobs\n",
        )
        .unwrap();
        let overrides = vec![
            "qorus.instance-key=from-cli".to_owned(),
            "qorus.audit:*".to_owned(),
        ];
        let options = Options::load(&fx.home, &overrides).unwrap();
        assert_eq!(options.instance_key(), "from-cli");
        assert_eq!(options.max_events(), 7);
        assert!(options.audits(AuditCode::WorkflowData));

        let overrides = vec![
            "qorus.max-events=8".to_owned(),
            "qorus.max-events=eight".to_owned(),
        ];
        let err = Options::load(&fx.home, &overrides).unwrap_err();
        assert!(
            matches!(err, OptionsError::Invalid { line: 2, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "command line:2: qorus.max-events: expected a positive integer, got \"eight\""
        );
        let err = Options::load(&fx.home, &["max-events=8".to_owned()]).unwrap_err();
        assert!(
            err.to_string().starts_with("command line:1: syntax error"),
            "{err}"
        );
    }

    #[test]
    fn file_errors_stop_before_overrides_and_unreadable_file_is_read_error() {
        let fx = fixture();
        std::fs::write(fx.home.options_file(), "qorus.nope: 1\n").unwrap();
        let err = Options::load(&fx.home, &["qorus.max-events=1".to_owned()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("options:1: unknown option qorus.nope"),
            "{err}"
        );

        // A directory where the file should be cannot be read.
        std::fs::remove_file(fx.home.options_file()).unwrap();
        std::fs::create_dir(fx.home.options_file()).unwrap();
        let err = Options::load(&fx.home, &[]).unwrap_err();
        assert!(matches!(err, OptionsError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot read options file"),
            "{err}"
        );
    }

    #[test]
    fn listeners_from_the_reference_example() {
        let fx = fixture();
        let etc = fx.home.etc();
        for name in ["cert1.pem", "key1.pem", "cert2.pem", "key2.pem"] {
            std::fs::write(etc.join(name), "pem").unwrap();
        }
        let options = parse(
            &fx,
            concat!(
                "qorus.http-secure-server: ",
                "192.168.20.77:8085{cert=$OMQ_DIR/etc/cert1.pem;key=$OMQ_DIR/etc/key1.pem},",
                "8086{cert=$OMQ_DIR/etc/cert2.pem;key=$OMQ_DIR/etc/key2.pem}\n",
                "qorus.http-server: 127.0.0.1:8001,[::1]:8001\n",
            ),
        )
        .unwrap();
        let listeners = options.http_listeners();
        assert_eq!(listeners.len(), 4);
        assert_eq!(listeners[0].host.as_deref(), Some("192.168.20.77"));
        assert_eq!(listeners[0].port, 8085);
        assert_eq!(
            listeners[0].tls,
            Some(TlsFiles {
                cert: etc.join("cert1.pem"),
                key: etc.join("key1.pem")
            })
        );
        assert_eq!(listeners[1].host, None);
        assert_eq!(listeners[1].port, 8086);
        assert_eq!(
            listeners[1].tls.as_ref().map(|t| t.key.clone()),
            Some(etc.join("key2.pem"))
        );
        assert_eq!(
            listeners[2],
            HttpListener {
                host: Some("127.0.0.1".to_owned()),
                port: 8001,
                tls: None
            }
        );
        assert_eq!(listeners[3].host.as_deref(), Some("::1"));
        assert!(!options.describe()[5].1.contains("$OMQ_DIR"));
    }

    #[test]
    fn listener_errors_in_context() {
        let fx = fixture();
        let (line, message) = error(&fx, "\nqorus.http-server: 8001{cert=$OMQ_DIR/etc/c.pem}\n");
        assert_eq!(line, 2);
        assert!(
            message.contains(
                "qorus.http-server listeners are plain HTTP; use qorus.http-secure-server for TLS"
            ),
            "{message}"
        );
        let (_, message) = error(
            &fx,
            "qorus.http-secure-server: 8443{cert=$OMQ_DIR/etc/c.pem",
        );
        assert!(message.contains("unterminated '{'"), "{message}");
        let (_, message) = error(
            &fx,
            "qorus.http-secure-server: 8443{cert=$OMQ_DIR/etc/c.pem}",
        );
        assert_eq!(
            message,
            format!(
                "qorus.http-secure-server: certificate file {} does not exist",
                fx.home.etc().join("c.pem").display()
            )
        );
        let (_, message) = error(&fx, "qorus.http-server: 0");
        assert!(message.contains("bad port \"0\""), "{message}");
    }

    #[test]
    fn describe_and_debug_never_show_the_password() {
        let fx = fixture();
        for systemdb in [
            "postgres://omq:hunter2@db:5432/omq",
            "pgsql:omq/hunter2@omq(utf8)%db:5432{min=1,max=5}",
        ] {
            let options = parse(&fx, &format!("qorus.systemdb: {systemdb}\n")).unwrap();
            let described = options.describe();
            let (name, value) = &described[2];
            assert_eq!(*name, "qorus.systemdb");
            assert_eq!(value, "postgres://omq:***@db:5432/omq");
            assert!(!format!("{described:?}").contains("hunter2"));
            assert!(!format!("{options:?}").contains("hunter2"));
        }
    }

    #[test]
    fn describe_lists_every_option_in_table_order() {
        let fx = fixture();
        let options = parse(&fx, "qorus.audit: *\nqorus.rbac-security: True").unwrap();
        let described = options.describe();
        let names: Vec<&str> = described.iter().map(|(name, _)| *name).collect();
        let expected: Vec<&str> = table().iter().map(OptionDef::qualified_name).collect();
        assert_eq!(names, expected);
        let get = |name: &str| {
            described
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("qorus.audit").as_deref(), Some("*"));
        assert_eq!(get("qorus.rbac-security").as_deref(), Some("true"));
        assert_eq!(get("qorus.max-events").as_deref(), Some("10000"));
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("instance-kye", "instance-key"), 2);
        assert_eq!(edit_distance("logdir", "logdir"), 0);
    }
}

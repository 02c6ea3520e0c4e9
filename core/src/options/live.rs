//! Options that change while Sluice runs (`omq.system.set-option`).
//!
//! The options file and the command line give every process its *base* options when it
//! starts. An operator may then change an option the table does not mark startup-only; the
//! master keeps those changes, in the order made, as `qorus.NAME=VALUE` lines and hands them
//! to every process: in the bootstrap of each one it starts, and in every registration and
//! heartbeat reply, so a running process has them within one heartbeat and a process a new
//! master adopts drops what the old master had changed. The changes last as long as the
//! master runs; the options file stays the operator's, and Sluice never writes it.

use std::sync::{Arc, RwLock};

use super::{find, Options};

/// Why an option cannot change now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetOptionError {
    /// No such option, or a value its parser refuses: the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The option is read once, at startup.
    #[error(
        "{0} is read when Sluice starts and cannot change while it runs: put it in the \
         options file (or give it to sluice-master on the command line) and restart"
    )]
    StartupOnly(&'static str),
}

struct State {
    current: Arc<Options>,
    /// `(NAME without the prefix, VALUE)`, one per option, in the order first changed.
    changes: Vec<(&'static str, String)>,
    /// What [`LiveOptions::replace_changes`] was last given, so a list it could not apply
    /// in full is not tried (and reported) again at every heartbeat.
    received: Vec<String>,
}

/// One process's options: the base it started with and the changes made since.
pub struct LiveOptions {
    base: Options,
    state: RwLock<State>,
}

impl LiveOptions {
    pub fn new(base: Options) -> LiveOptions {
        LiveOptions {
            state: RwLock::new(State {
                current: Arc::new(base.clone()),
                changes: Vec::new(),
                received: Vec::new(),
            }),
            base,
        }
    }

    /// The options as they stand now. Cheap: take it afresh wherever a value is used.
    pub fn current(&self) -> Arc<Options> {
        self.read().current.clone()
    }

    /// The changes made while running, as `qorus.NAME=VALUE` lines.
    pub fn changes(&self) -> Vec<String> {
        self.read()
            .changes
            .iter()
            .map(|(name, value)| format!("qorus.{name}={value}"))
            .collect()
    }

    /// Changes one option (`qorus.NAME` or `NAME`) with the options file's checks; startup
    /// options are refused. Returns the options now in force.
    pub fn set(&self, name: &str, value: &str) -> Result<Arc<Options>, SetOptionError> {
        let bare = name.strip_prefix("qorus.").unwrap_or(name);
        if let Some(def) = find(bare) {
            if def.startup_only {
                return Err(SetOptionError::StartupOnly(def.qualified_name()));
            }
        }
        let mut state = self.write();
        let mut next = (*state.current).clone();
        next.set(bare, value).map_err(SetOptionError::Invalid)?;
        // `set` succeeded, so the option exists.
        let Some(def) = find(bare) else {
            return Err(SetOptionError::Invalid(format!(
                "unknown option qorus.{bare}"
            )));
        };
        let value = value.trim().to_string();
        match state.changes.iter_mut().find(|(n, _)| *n == def.name) {
            Some(change) => change.1 = value,
            None => state.changes.push((def.name, value)),
        }
        state.current = Arc::new(next);
        Ok(state.current.clone())
    }

    /// Puts in force exactly `changes` (`qorus.NAME=VALUE` lines, as [`changes`] gives
    /// them) over the base, as a process does with what the master sends. Returns whether
    /// anything changed. A line this process cannot apply (a newer master's option, say) is
    /// skipped and named in the error; the others still apply.
    ///
    /// [`changes`]: LiveOptions::changes
    pub fn replace_changes(&self, changes: &[String]) -> Result<bool, String> {
        if self.read().received == changes {
            return Ok(false);
        }
        let mut next = self.base.clone();
        let mut applied = Vec::new();
        let mut refused = Vec::new();
        for line in changes {
            let parsed = line
                .split_once('=')
                .map(|(name, value)| (name.trim(), value.trim()))
                .and_then(|(name, value)| {
                    let bare = name.strip_prefix("qorus.").unwrap_or(name);
                    find(bare).map(|def| (def, value))
                });
            let Some((def, value)) = parsed else {
                refused.push(format!("{line:?}: not a known qorus.NAME=VALUE"));
                continue;
            };
            if def.startup_only {
                refused.push(format!("{}: read at startup only", def.qualified_name()));
                continue;
            }
            match next.set(def.name, value) {
                Ok(()) => applied.push((def.name, value.to_string())),
                Err(message) => refused.push(message),
            }
        }
        let mut state = self.write();
        state.current = Arc::new(next);
        state.changes = applied;
        state.received = changes.to_vec();
        drop(state);
        if refused.is_empty() {
            Ok(true)
        } else {
            Err(format!(
                "option changes not applied: {}",
                refused.join("; ")
            ))
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written: each write is
        // one assignment of fully built values.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("changes", &self.changes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::Home;

    fn live() -> (tempfile::TempDir, LiveOptions) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_path_buf());
        let options =
            Options::parse("qorus.max-retries: 7\n", &dir.path().join("options"), &home).unwrap();
        (dir, LiveOptions::new(options))
    }

    #[test]
    fn a_runtime_option_changes_and_is_listed_once() {
        let (_dir, live) = live();
        assert_eq!(live.current().max_retries(), 7);
        assert_eq!(live.set("qorus.max-retries", "3").unwrap().max_retries(), 3);
        assert_eq!(live.set("max-retries", " 4 ").unwrap().max_retries(), 4);
        assert_eq!(
            live.set("recover_delay", "5")
                .unwrap()
                .recover_delay()
                .as_secs(),
            5
        );
        assert_eq!(live.current().max_retries(), 4);
        assert_eq!(
            live.changes(),
            ["qorus.max-retries=4", "qorus.recover_delay=5"]
        );
    }

    #[test]
    fn startup_unknown_and_bad_values_are_refused_and_change_nothing() {
        let (_dir, live) = live();
        assert_eq!(
            live.set("qorus.systemdb", "sqlite:/tmp/x.db").unwrap_err(),
            SetOptionError::StartupOnly("qorus.systemdb")
        );
        let SetOptionError::Invalid(message) = live.set("qorus.max-retrie", "1").unwrap_err()
        else {
            panic!("not Invalid")
        };
        assert!(message.contains("did you mean"), "{message}");
        let SetOptionError::Invalid(message) = live.set("max-retries", "-1").unwrap_err() else {
            panic!("not Invalid")
        };
        assert!(message.contains("qorus.max-retries"), "{message}");
        assert!(live.changes().is_empty());
        assert_eq!(live.current().max_retries(), 7);
    }

    #[test]
    fn replacing_changes_starts_from_the_base() {
        let (_dir, live) = live();
        live.set("max-retries", "3").unwrap();
        assert!(live
            .replace_changes(&["qorus.recover_delay=9".to_string()])
            .unwrap());
        // max-retries is back to the file's value: the master no longer lists it.
        assert_eq!(live.current().max_retries(), 7);
        assert_eq!(live.current().recover_delay().as_secs(), 9);
        assert!(!live
            .replace_changes(&["qorus.recover_delay=9".to_string()])
            .unwrap());
        let err = live
            .replace_changes(&[
                "qorus.systemdb=sqlite:x".to_string(),
                "qorus.max-retries=2".to_string(),
                "nonsense".to_string(),
            ])
            .unwrap_err();
        assert!(
            err.contains("qorus.systemdb") && err.contains("nonsense"),
            "{err}"
        );
        assert_eq!(live.current().max_retries(), 2, "the good line applied");
        assert_eq!(live.changes(), ["qorus.max-retries=2"]);
    }
}

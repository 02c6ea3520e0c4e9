//! The instance home, `$OMQ_DIR`: `etc/options`, `etc/cluster.key`, `log/`, `user/`, `var/`.

use std::path::{Path, PathBuf};

/// The environment variable that names the instance home, as in Qorus.
pub const OMQ_DIR_ENV: &str = "OMQ_DIR";

/// An instance home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$OMQ_DIR` when set, else `./var/omq` under the current directory (the checkout when
    /// run from it), as DESIGN.md says.
    pub fn from_env() -> Self {
        match std::env::var_os(OMQ_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::new(PathBuf::from(dir)),
            _ => Self::new(PathBuf::from("var/omq")),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    pub fn options_file(&self) -> PathBuf {
        self.etc().join("options")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn var_dir(&self) -> PathBuf {
        self.root.join("var")
    }

    pub fn user_dir(&self) -> PathBuf {
        self.root.join("user")
    }

    /// Replaces `$OMQ_DIR` and `${OMQ_DIR}` in an option value with this home's path.
    pub fn expand(&self, value: &str) -> String {
        let root = self.root.to_string_lossy();
        value
            .replace("${OMQ_DIR}", &root)
            .replace("$OMQ_DIR", &root)
    }
}

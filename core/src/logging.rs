//! Logging through `tracing`: one file per process under `qorus.logdir`
//! (`<instance-key>-<process>.log`) plus stderr when running in the foreground.
//!
//! The file can only be opened once the options are parsed and the database is open
//! (startup step 3), but the lines logged before that matter most when a start fails. So
//! until the file is attached, lines are kept in memory and written into it first.
//! Every line is written with one `write` call, unbuffered, so a `kill -9` loses nothing
//! already logged.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::time::UtcTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable with a `tracing` filter, e.g. `SLUICE_LOG=debug,sqlx=warn`.
pub const LOG_FILTER_ENV: &str = "SLUICE_LOG";

/// Lines kept before the file opens, at most; a start that logs more than this before
/// step 3 has bigger problems, and memory must stay bounded.
const PENDING_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create log directory {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("cannot open log file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write log file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Default)]
struct Target {
    file: Option<(PathBuf, File)>,
    pending: Vec<u8>,
}

/// The process's log file, shared by the `tracing` layer and the code that opens it.
#[derive(Clone, Default)]
pub struct LogFile {
    target: Arc<Mutex<Target>>,
}

impl LogFile {
    /// Opens (appending) `dir/<name>`, creating `dir`, and writes the lines logged so far.
    pub fn open(&self, dir: &Path, name: &str) -> Result<PathBuf, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .map_err(|source| LogError::Open {
                path: path.clone(),
                source,
            })?;
        let mut target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&target.pending)
            .map_err(|source| LogError::Write {
                path: path.clone(),
                source,
            })?;
        target.pending = Vec::new();
        target.file = Some((path.clone(), file));
        Ok(path)
    }

    /// Flushes to disk and detaches the file; later lines go to stderr only. Startup's and
    /// shutdown's last step: "close system log files".
    pub fn close(&self) {
        let mut target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, file)) = target.file.take() {
            let _ = file.sync_all();
        }
    }

    pub fn path(&self) -> Option<PathBuf> {
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        target.file.as_ref().map(|(p, _)| p.clone())
    }
}

/// One formatted line's destination: the file, or the pending buffer until it opens.
pub struct LogFileWriter {
    target: Arc<Mutex<Target>>,
}

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        match target.file.as_mut() {
            Some((_, file)) => file.write_all(buf)?,
            None => {
                if target.pending.len() + buf.len() <= PENDING_LIMIT {
                    target.pending.extend_from_slice(buf);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter {
            target: self.target.clone(),
        }
    }
}

/// Installs the global subscriber: stderr (when `stderr` is true) and the process's log
/// file, which starts detached. Call once, first thing in `main`.
pub fn init(stderr: bool) -> LogFile {
    let file = LogFile::default();
    let filter = || {
        EnvFilter::try_from_env(LOG_FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"))
    };
    let file_layer = tracing_subscriber::fmt::layer()
        .with_timer(UtcTime::rfc_3339())
        .with_ansi(false)
        .with_writer(file.clone())
        .with_filter(filter());
    let stderr_layer = stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_timer(UtcTime::rfc_3339())
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(io::stderr)
            .with_filter(filter())
    });
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
    file
}

/// The log file name for a process of an instance: `<instance-key>-<process>.log`.
pub fn file_name(instance_key: &str, process: &str) -> String {
    format!("{instance_key}-{process}.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_before_open_are_written_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::default();
        log.make_writer().write_all(b"early\n").expect("write");
        let path = log
            .open(&dir.path().join("log"), "k-master.log")
            .expect("open");
        log.make_writer().write_all(b"late\n").expect("write");
        log.close();
        log.make_writer()
            .write_all(b"after close\n")
            .expect("write");
        let text = std::fs::read_to_string(path).expect("read");
        assert_eq!(text, "early\nlate\n");
    }

    #[test]
    fn unopenable_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"x").expect("write");
        let err = LogFile::default()
            .open(&blocker, "k-master.log")
            .expect_err("must fail");
        assert!(
            err.to_string().contains("cannot create log directory"),
            "{err}"
        );
    }
}

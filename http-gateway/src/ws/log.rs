//! `/log/SOURCE`: a process's log file, as text messages: first its last lines (100, or
//! `?lines=N` up to [`MAX_LINES`]), then whatever is added, checked every [`POLL`]. Each
//! message holds whole lines, each ending with a newline.
//!
//! The sources: `system` (the master's log), `http` (the gateway's own), and
//! `workflows/NAME`, `services/NAME`, `jobs/NAME` (or the interface's id instead of its
//! name): the log of the interface's process, `<instance-key>-<type>-NAME-VERSION.log`,
//! for the version that runs, else the newest loaded. Interfaces are looked up with the
//! master (`omq.system.list-interfaces`), and the file is always `<logdir>/` plus a name
//! made here from what the master knows, never from the request's text, so no path can
//! lead out of the log directory.
//!
//! A file that is truncated is read again from its start; one that is replaced (rotated:
//! the name now names another file) is read to its end, then the new one from its start.
//! A file that does not exist yet is waited for.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use prost::Message as _;
use sluice_proto::v1::{Interface, InterfaceList};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::{close, Incoming};
use crate::errors::ApiError;
use crate::Gateway;

/// Lines sent first, unless the request asks for another number.
pub const DEFAULT_LINES: usize = 100;
pub const MAX_LINES: usize = 10_000;
/// How often the file is checked for more.
pub const POLL: Duration = Duration::from_millis(250);
/// The most read for the first lines, and per message after.
const TAIL_BYTES: u64 = 1024 * 1024;
const CHUNK: u64 = 256 * 1024;

/// `<logdir>/<instance-key>-<process>.log`, when that is one plain file name.
pub fn log_file(logdir: &Path, instance_key: &str, process: &str) -> Result<PathBuf, ApiError> {
    let name = format!("{instance_key}-{process}.log");
    let plain = !process.is_empty()
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
        && matches!(
            Path::new(&name).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
    if !plain {
        return Err(ApiError::new(
            "NOT-FOUND",
            format!("{process:?} does not name a log file"),
        ));
    }
    Ok(logdir.join(name))
}

/// `1.10` after `1.9`: numeric parts compare as numbers.
fn version_key(version: &str) -> Vec<(u64, String)> {
    version
        .split(['.', '-', '_'])
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (0, part.to_string()),
        })
        .collect()
}

/// The process an interface's log belongs to: the running version's, else the newest's.
fn choose<'a>(candidates: &[&'a Interface]) -> Option<&'a Interface> {
    candidates
        .iter()
        .copied()
        .max_by_key(|i| (!i.network_id.is_empty(), version_key(&i.version)))
}

/// The log file a source names.
pub(crate) async fn resolve(gateway: &Gateway, source: &str) -> Result<PathBuf, ApiError> {
    let local = &gateway.local;
    let file = |process: &str| log_file(&local.logdir, &local.instance_key, process);
    let unknown = || {
        ApiError::new(
            "NOT-FOUND",
            format!(
                "no log source {source:?}; the sources: system, http, workflows/NAME, \
                 services/NAME, jobs/NAME (NAME or the interface's id)"
            ),
        )
    };
    let parts: Vec<&str> = source.trim_matches('/').split('/').collect();
    let (kind, wanted) = match parts.as_slice() {
        ["system"] | ["master"] => return file("master"),
        ["http"] | ["http-gateway"] => return file("http-gateway"),
        [plural, wanted] if !wanted.is_empty() => match *plural {
            "workflows" => ("workflow", *wanted),
            "services" => ("service", *wanted),
            "jobs" => ("job", *wanted),
            _ => return Err(unknown()),
        },
        _ => return Err(unknown()),
    };
    let reply = gateway
        .call(
            "omq.system.list-interfaces",
            Vec::new(),
            Duration::from_secs(15),
            0,
        )
        .await?;
    let list = InterfaceList::decode(reply.as_slice()).map_err(|e| {
        ApiError::new(
            "INTERNAL-ERROR",
            format!("the master's interface list is malformed: {e}"),
        )
    })?;
    let id = wanted.parse::<i64>().ok();
    let candidates: Vec<&Interface> = list
        .interfaces
        .iter()
        .filter(|i| i.r#type == kind && (i.name == wanted || Some(i.id) == id))
        .collect();
    let Some(chosen) = choose(&candidates) else {
        return Err(ApiError::new(
            "NOT-FOUND",
            format!("no {kind} {wanted:?} is loaded"),
        ));
    };
    if chosen.network_id.is_empty() {
        file(&format!("{kind}-{}-{}", chosen.name, chosen.version))
    } else {
        file(&chosen.network_id)
    }
}

/// `GET /log/{*source}`.
pub(crate) async fn open(
    State(gateway): State<Arc<Gateway>>,
    UrlPath(source): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match super::accept(&gateway, upgrade, &headers) {
        Ok(upgrade) => upgrade,
        Err(response) => return *response,
    };
    let lines = match url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "lines")
    {
        None => DEFAULT_LINES,
        Some((_, text)) => match text.parse::<usize>() {
            Ok(n) if n <= MAX_LINES => n,
            _ => {
                return super::refused(
                    &headers,
                    ApiError::invalid(format!(
                        "lines must be a number from 0 to {MAX_LINES}, not {text:?}"
                    )),
                )
            }
        },
    };
    let path = match resolve(&gateway, &source).await {
        Ok(path) => path,
        Err(error) => return super::refused(&headers, error),
    };
    let stopping = gateway.local.stopping.clone();
    upgrade.on_upgrade(move |socket| serve(socket, path, lines, stopping))
}

/// A log file being read: where, and which file (its inode) the position belongs to.
pub struct Follower {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    inode: u64,
    position: u64,
}

/// The last `lines` whole lines of `bytes` (which may begin mid-line when `cut`).
fn last_lines(bytes: &[u8], lines: usize, cut: bool) -> &[u8] {
    let mut start = 0;
    if cut {
        match bytes.iter().position(|b| *b == b'\n') {
            Some(i) => start = i + 1,
            None => return &[],
        }
    }
    let bytes = &bytes[start..];
    if lines == 0 {
        return &[];
    }
    // The newline ending the line before the first one wanted.
    let mut seen = 0;
    for (i, b) in bytes.iter().enumerate().rev() {
        if *b == b'\n' && i + 1 < bytes.len() {
            seen += 1;
            if seen == lines {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

impl Follower {
    pub fn new(path: PathBuf) -> Follower {
        Follower {
            path,
            file: None,
            inode: 0,
            position: 0,
        }
    }

    /// The file's last `lines` whole lines (none while it does not exist).
    pub async fn start(&mut self, lines: usize) -> std::io::Result<Vec<u8>> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata().await?;
        let from = meta.len().saturating_sub(TAIL_BYTES);
        file.seek(SeekFrom::Start(from)).await?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(meta.len() - from)
            .read_to_end(&mut bytes)
            .await?;
        // Only whole lines: a line being written is sent once it is complete.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let tail = last_lines(&bytes[..whole], lines, from > 0).to_vec();
        self.position = from + whole as u64;
        self.inode = meta.ino();
        self.file = Some(file);
        Ok(tail)
    }

    /// What was added since the last call, whole lines only (a line longer than a message
    /// is sent in pieces).
    pub async fn more(&mut self) -> std::io::Result<Vec<u8>> {
        let now = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let replaced = match (&now, &self.file) {
            (Some(meta), Some(_)) => meta.ino() != self.inode,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if replaced {
            // The rest of the old file first, then the new one from its start.
            if self.file.is_some() {
                out = self.read(u64::MAX, true).await?;
            }
            let Ok(file) = tokio::fs::File::open(&self.path).await else {
                return Ok(out);
            };
            self.inode = file.metadata().await?.ino();
            self.file = Some(file);
            self.position = 0;
        }
        if let Some(file) = &self.file {
            if file.metadata().await?.len() < self.position {
                // Truncated: what is there now is new.
                self.position = 0;
            }
        }
        let room = CHUNK.saturating_sub(out.len() as u64);
        if room > 0 {
            out.extend(self.read(room, false).await?);
        }
        Ok(out)
    }

    /// Up to `most` bytes from the position: whole lines, or everything when `all`.
    async fn read(&mut self, most: u64, all: bool) -> std::io::Result<Vec<u8>> {
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let most = most.min(CHUNK);
        file.seek(SeekFrom::Start(self.position)).await?;
        let mut bytes = Vec::new();
        file.take(most).read_to_end(&mut bytes).await?;
        let keep = if all || bytes.len() as u64 == most {
            bytes.len()
        } else {
            bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
        };
        bytes.truncate(keep);
        self.position += keep as u64;
        Ok(bytes)
    }
}

async fn serve(
    mut socket: WebSocket,
    path: PathBuf,
    lines: usize,
    mut stopping: watch::Receiver<bool>,
) {
    let mut follower = Follower::new(path);
    let first = follower.start(lines).await;
    let mut chunk = match first {
        Ok(chunk) => chunk,
        Err(err) => {
            return super::close(
                &mut socket,
                close::INTERNAL,
                &format!("cannot read the log: {err}"),
            )
            .await
        }
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = tokio::time::interval(super::PING_EVERY);
    ping.tick().await;
    loop {
        if !chunk.is_empty() {
            let text = String::from_utf8_lossy(&chunk).into_owned();
            chunk.clear();
            if let Err(gone) = super::send(&mut socket, Message::Text(text.into())).await {
                return super::end(&mut socket, gone, "log lines").await;
            }
        }
        tokio::select! {
            _ = poll.tick() => match follower.more().await {
                Ok(more) => chunk = more,
                Err(err) => tracing::debug!("/log: {err}"),
            },
            received = socket.recv() => {
                let incoming = Incoming::of(received);
                if !super::common(&mut socket, &incoming).await {
                    return;
                }
            },
            due = super::due(&mut ping, &mut stopping) => {
                if !super::keep_alive(&mut socket, due).await {
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn log_files_stay_in_the_log_directory() {
        let dir = Path::new("/var/log/sluice");
        assert_eq!(
            log_file(dir, "k", "service-S-1.0").unwrap(),
            dir.join("k-service-S-1.0.log")
        );
        for bad in ["", "../x", "a/b", "a\\b", "x\0y", "/etc/passwd"] {
            assert!(log_file(dir, "k", bad).is_err(), "{bad:?}");
        }
        assert!(log_file(dir, ".", "x").is_err());
    }

    #[test]
    fn the_running_version_or_else_the_newest() {
        let i = |version: &str, network_id: &str| Interface {
            r#type: "service".into(),
            name: "S".into(),
            version: version.into(),
            network_id: network_id.into(),
            ..Default::default()
        };
        let (a, b, c) = (i("1.9", ""), i("1.10", ""), i("1.2", "service-S-1.2"));
        assert_eq!(choose(&[&a, &b]).unwrap().version, "1.10");
        assert_eq!(choose(&[&a, &b, &c]).unwrap().version, "1.2");
        assert!(choose(&[]).is_none());
    }

    #[test]
    fn the_last_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2, false), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 5, false), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 0, false), b"");
        assert_eq!(last_lines(b"tial\nb\nc\n", 5, true), b"b\nc\n");
        assert_eq!(last_lines(b"partial", 5, true), b"");
    }

    #[tokio::test]
    async fn following_a_file_through_growth_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k-master.log");
        let mut follower = Follower::new(path.clone());
        assert_eq!(follower.start(2).await.unwrap(), b"", "no file yet");
        std::fs::write(&path, "one\ntwo\nthree\npart").unwrap();
        assert_eq!(follower.more().await.unwrap(), b"one\ntwo\nthree\n");
        let mut follower = Follower::new(path.clone());
        assert_eq!(follower.start(2).await.unwrap(), b"two\nthree\n");
        assert_eq!(follower.more().await.unwrap(), b"", "half a line waits");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"ial\nfour\n").unwrap();
        assert_eq!(follower.more().await.unwrap(), b"partial\nfour\n");
        // Truncated: read from the start again.
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(follower.more().await.unwrap(), b"new\n");
        // Rotated: the rest of the old file, then the new one.
        file.write_all(b"old tail\n").unwrap();
        drop(file);
        std::fs::rename(&path, dir.path().join("k-master.log.1")).unwrap();
        std::fs::write(&path, "fresh\n").unwrap();
        assert_eq!(follower.more().await.unwrap(), b"old tail\nfresh\n");
        assert_eq!(follower.more().await.unwrap(), b"");
    }
}

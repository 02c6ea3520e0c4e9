//! `/raw/remote-file`: files uploaded for a remote command (`oload` over
//! `/remote-command`), as Qorus's remote client sends them.
//!
//! - `POST /raw/remote-file`: the body is one file; header `filepath` is its relative name
//!   (subdirectories allowed; no `..`, `.`, empty or absolute parts). Without a `dir`
//!   header the upload makes a fresh directory `$OMQ_DIR/user/remote/<32 hex digits>`
//!   (mode 0700); with one it adds to that directory. The reply (200, `text/plain`) is the
//!   directory's name. A file is at most the body limit (16 MiB, decoded), and all upload
//!   directories together at most [`UPLOADS_TOTAL`]; files are 0600.
//! - `DELETE /raw/remote-file` with header `dir`: removes the directory (200, its name).
//!
//! Directories older than [`STALE_AFTER`] are removed when a new one is made. Only names
//! the gateway made are taken as `dir`, and nothing is followed through a symbolic link.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::errors::ApiError;
use crate::format;
use crate::Gateway;

/// Where uploads go, under the instance home.
pub const UPLOADS: &str = "user/remote";
/// Upload directories older than this are removed.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The most all upload directories together may hold, so uploads cannot fill the disk the
/// system database and logs live on: a file that would pass it is refused (413).
pub const UPLOADS_TOTAL: u64 = 256 << 20;
const MAX_PATH: usize = 1024;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/raw/remote-file",
            post(upload)
                .delete(remove)
                .fallback(crate::rest::method_not_allowed),
        )
        .with_state(gateway)
}

/// A client's relative file name as a path inside the upload directory.
pub fn relative_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the file path is empty".into());
    }
    if text.len() > MAX_PATH {
        return Err(format!("the file path is longer than {MAX_PATH} bytes"));
    }
    if text.contains(['\0', '\\']) {
        return Err("the file path holds a NUL or a backslash".into());
    }
    if text.starts_with('/') {
        return Err("the file path must be relative".into());
    }
    let mut path = PathBuf::new();
    for part in text.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.len() > 255 {
            return Err(format!(
                "the file path {text:?} has a part that is empty, \".\" or \"..\", or too long"
            ));
        }
        path.push(part);
    }
    // What was pushed is only plain names.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{text:?} is not a plain relative path"));
    }
    Ok(path)
}

fn dir_name_ok(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// An existing upload directory the gateway made.
pub fn upload_dir(home: &Path, name: &str) -> Result<PathBuf, ApiError> {
    if !dir_name_ok(name) {
        return Err(ApiError::invalid(format!(
            "{name:?} is not an upload directory: POST /raw/remote-file without a dir header \
             makes one and answers its name"
        )));
    }
    let path = home.join(UPLOADS).join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        _ => Err(ApiError::new(
            "NOT-FOUND",
            format!("no upload directory {name} (removed, or older than a day)"),
        )),
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| ApiError::invalid(format!("the {name} header is not ASCII text"))),
    }
}

fn io_error(what: &str, err: io::Error) -> ApiError {
    tracing::warn!("/raw/remote-file: {what}: {err}");
    ApiError::new("INTERNAL-ERROR", format!("{what}: {err}"))
}

fn mkdir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Removes upload directories older than [`STALE_AFTER`] (best effort).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if dir_name_ok(name) && meta.is_dir() && old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh upload directory: its name and path.
fn new_dir(home: &Path) -> Result<(String, PathBuf), ApiError> {
    let root = home.join(UPLOADS);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .map_err(|e| io_error("cannot make the upload directory", e))?;
    remove_stale(&root);
    for _ in 0..4 {
        let bytes: [u8; 16] = rand::random();
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = root.join(&name);
        match mkdir(&path) {
            Ok(()) => return Ok((name, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error("cannot make the upload directory", e)),
        }
    }
    Err(ApiError::new(
        "INTERNAL-ERROR",
        "cannot make a fresh upload directory",
    ))
}

fn plain(name: &str) -> Response {
    let mut response = Response::new(Body::from(name.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `POST /raw/remote-file`.
async fn upload(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let headers = request.headers().clone();
    match store(&gateway, &headers, request.into_body()).await {
        Ok(name) => plain(&name),
        Err(error) => format::respond_error(format::reply_format(&headers), &error),
    }
}

async fn store(gateway: &Gateway, headers: &HeaderMap, body: Body) -> Result<String, ApiError> {
    let home = &gateway.local.home;
    if home.as_os_str().is_empty() {
        return Err(ApiError::new(
            "INTERNAL-ERROR",
            "the gateway does not know the instance home",
        ));
    }
    let filepath = header_text(headers, "filepath")?.ok_or_else(|| {
        ApiError::invalid(
            "POST /raw/remote-file needs the header filepath: the file's relative name",
        )
    })?;
    let relative = relative_path(filepath).map_err(ApiError::invalid)?;
    let used = used_bytes(&home.join(UPLOADS));
    let room = UPLOADS_TOTAL.saturating_sub(used);
    if room == 0 {
        return Err(uploads_full(used));
    }
    let limit = crate::rest::MAX_BODY.min(usize::try_from(room).unwrap_or(usize::MAX));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let (name, dir, fresh) = match header_text(headers, "dir")? {
        Some(name) if !name.is_empty() => (name.to_string(), upload_dir(home, name)?, false),
        _ => {
            let (name, dir) = new_dir(home)?;
            (name, dir, true)
        }
    };
    let result = write_file(&dir, &relative, body, limit).await;
    if result.is_err() && fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| name)
}

fn uploads_full(used: u64) -> ApiError {
    ApiError::new(
        "PAYLOAD-TOO-LARGE",
        format!(
            "the upload directories hold {used} bytes, the most they may ({UPLOADS_TOTAL}); \
             remove finished ones with DELETE /raw/remote-file (header dir)"
        ),
    )
}

/// Bytes in the regular files under `root`, links not followed; 0 if it is missing.
fn used_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    total
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        "PAYLOAD-TOO-LARGE",
        format!(
            "the file is larger than {limit} bytes (at most {} per file, and what is left of \
             {UPLOADS_TOTAL} bytes for all upload directories)",
            crate::rest::MAX_BODY
        ),
    )
}

async fn write_file(dir: &Path, relative: &Path, body: Body, limit: usize) -> Result<(), ApiError> {
    let path = dir.join(relative);
    if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Each level made here (0700), none followed if it is a link.
        let mut at = dir.to_path_buf();
        for part in parent.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(ApiError::invalid(format!(
                        "{} is a file already",
                        relative.display()
                    )))
                }
                Err(_) => mkdir(&at).map_err(|e| io_error("cannot make a directory", e))?,
            }
        }
    }
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        // The file itself is never a link followed elsewhere.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .await
        .map_err(|e| io_error(&format!("cannot write {}", relative.display()), e))?;
    let mut body = http_body_util::Limited::new(body, limit);
    let written: Result<(), ApiError> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large(limit)
                } else {
                    ApiError::new("BAD-REQUEST", format!("cannot read the file: {e}"))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data)
                    .await
                    .map_err(|e| io_error("cannot write the file", e))?;
            }
        }
        file.flush()
            .await
            .map_err(|e| io_error("cannot write the file", e))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
    }
    written
}

/// `DELETE /raw/remote-file`.
async fn remove(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let result = async {
        let name = header_text(&headers, "dir")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::invalid("DELETE /raw/remote-file needs the header dir"))?;
        let dir = upload_dir(&gateway.local.home, name)?;
        std::fs::remove_dir_all(&dir).map_err(|e| io_error("cannot remove the directory", e))?;
        Ok::<_, ApiError>(name.to_string())
    }
    .await;
    match result {
        Ok(name) => plain(&name),
        Err(error) => format::respond_error(format::reply_format(&headers), &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert_eq!(relative_path("a.yaml").unwrap(), PathBuf::from("a.yaml"));
        assert_eq!(
            relative_path("sub/b.py").unwrap(),
            PathBuf::from("sub/b.py")
        );
        assert_eq!(relative_path("..a").unwrap(), PathBuf::from("..a"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\0b",
            ".",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?}");
        }
        assert!(relative_path(&"x".repeat(300)).is_err());
        assert!(relative_path(&"x/".repeat(600)).is_err());
    }

    #[test]
    fn only_directories_the_gateway_made() {
        let home = tempfile::tempdir().unwrap();
        let (name, path) = new_dir(home.path()).unwrap();
        assert!(dir_name_ok(&name));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(upload_dir(home.path(), &name).unwrap(), path);
        for bad in [
            "..",
            "../../etc",
            "ABCDEF0123456789ABCDEF0123456789",
            "x",
            "",
        ] {
            assert!(upload_dir(home.path(), bad).is_err(), "{bad:?}");
        }
        let missing = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            upload_dir(home.path(), missing).unwrap_err().code,
            "NOT-FOUND"
        );
        // A link where a directory should be is not followed.
        std::os::unix::fs::symlink("/tmp", home.path().join(UPLOADS).join(missing)).unwrap();
        assert!(upload_dir(home.path(), missing).is_err());
    }
}

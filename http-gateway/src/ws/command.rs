//! `/remote-command`: operator commands over a WebSocket, as Qorus's remote client runs
//! them. The client opens the socket with a token from `GET /api/latest/system/wstoken`
//! (header `Qorus-Token`, or `?token=`), sends one YAML (or JSON) document
//!
//! ```yaml
//! cmd: oload
//! args: [RUNNOW-1.0.qjob.yaml, jobs.py]
//! files: [RUNNOW-1.0.qjob.yaml, jobs.py]   # oload: names in dir
//! dir: 6b1f...                            # oload: from POST /raw/remote-file
//! opts: {}
//! ```
//!
//! and receives YAML documents `{msgtype: text-output, data: TEXT}` with the output, the
//! last one `-- process terminated with exit code N --`; then the gateway closes the
//! socket (1000).
//!
//! The commands: `ostatus` (the system's status and its interfaces, from the master),
//! `oload` (runs `sluice load` on the definition files (`*.yaml`) uploaded into `dir`; the
//! code they name is read from there too; also `--list`, `--delete
//! TYPE:NAME[:VERSION]`, `--verbose`) and `oview` (`sluice load --list`: what is loaded).
//! `sluice` is the binary beside the gateway's own, run with `OMQ_DIR` set to the instance
//! home and its arguments as argv (never through a shell); every argument is checked
//! first, so only files of the upload directory and the options above reach it. Anything
//! else ends with exit code 1 and a message.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use prost::Message as _;
use serde_json::{json, Value};
use sluice_core::report;
use sluice_proto::v1::{InterfaceList, SystemStatus};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};

use super::{close, Gone, Incoming};
use crate::errors::ApiError;
use crate::Gateway;

/// How long the client may take to send its command.
const COMMAND_WAIT: Duration = Duration::from_secs(30);
/// How long a command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// The commands offered.
pub const COMMANDS: &[&str] = &["ostatus", "oload", "oview"];

/// One command as the client sent it.
#[derive(Debug, Default, PartialEq)]
pub struct CommandRequest {
    pub cmd: String,
    pub args: Vec<String>,
    pub files: Vec<String>,
    pub dir: Option<String>,
    pub opts: serde_json::Map<String, Value>,
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(value: Option<Value>, what: &str) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| text_of(v).ok_or_else(|| format!("{what} must be a list of strings")))
            .collect(),
        Some(single) => text_of(&single)
            .map(|s| vec![s])
            .ok_or_else(|| format!("{what} must be a list of strings")),
    }
}

impl CommandRequest {
    /// The client's YAML (or JSON) document.
    pub fn parse(text: &str) -> Result<CommandRequest, String> {
        let value = crate::format::from_yaml(text)
            .map_err(|e| format!("the command is not a YAML document: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err("the command must be a mapping: {cmd: NAME, args: [...]}".into());
        };
        let cmd = match object.remove("cmd") {
            Some(Value::String(cmd)) if !cmd.is_empty() => cmd,
            _ => return Err("the command has no cmd: {cmd: NAME, args: [...]}".into()),
        };
        let request = CommandRequest {
            cmd,
            args: strings(object.remove("args"), "args")?,
            files: strings(object.remove("files"), "files")?,
            dir: match object.remove("dir") {
                None | Some(Value::Null) => None,
                Some(Value::String(dir)) => Some(dir),
                Some(_) => return Err("dir must be a string".into()),
            },
            opts: match object.remove("opts") {
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(Value::Object(opts)) => opts,
                Some(_) => return Err("opts must be a mapping".into()),
            },
        };
        if let Some(key) = object.keys().next() {
            return Err(format!(
                "the command has an unknown key {key:?}; it takes cmd, args, files, dir, opts"
            ));
        }
        Ok(request)
    }
}

/// What to run for a command: the arguments of `sluice` and where.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub argv: Vec<String>,
    pub dir: Option<PathBuf>,
    /// Said before the output (e.g. options that are not used).
    pub notes: Vec<String>,
}

/// Whether `sluice load` takes the file as an argument (a definition), rather than as code
/// a definition names.
fn is_definition(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// The `sluice` invocation for `oload` or `oview`; an `Err` is the message to end with
/// exit code 1.
pub fn plan(request: &CommandRequest, home: &std::path::Path) -> Result<Plan, String> {
    match request.cmd.as_str() {
        "oview" => {
            if !request.args.is_empty() {
                return Err("oview takes no arguments here".into());
            }
            Ok(Plan {
                argv: vec!["load".into(), "--list".into()],
                dir: None,
                notes: Vec::new(),
            })
        }
        "oload" => {
            let dir = match &request.dir {
                Some(name) => {
                    Some(crate::remote::upload_dir(home, name).map_err(|e| e.desc.clone())?)
                }
                None => None,
            };
            let mut argv = vec!["load".to_string()];
            let mut files: Vec<String> = Vec::new();
            let mut args = request.args.iter();
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "-l" | "--list" => argv.push("--list".into()),
                    "-v" | "--verbose" => argv.push("--verbose".into()),
                    "-X" | "--delete" => {
                        let Some(what) = args.next() else {
                            return Err(format!("oload: {arg} needs TYPE:NAME[:VERSION]"));
                        };
                        if what.starts_with('-') {
                            return Err(format!("oload: {arg} needs TYPE:NAME[:VERSION]"));
                        }
                        argv.push("--delete".into());
                        argv.push(what.clone());
                    }
                    option if option.starts_with('-') => {
                        return Err(format!(
                            "oload: option {option:?} is not offered remotely; the options: \
                             --list, --delete TYPE:NAME[:VERSION], --verbose"
                        ))
                    }
                    // A file named on the command line: an uploaded one (Qorus's client
                    // names them as the user did; the upload kept the relative name).
                    file => {
                        if !files.iter().any(|f| f == file) && !request.files.contains(arg) {
                            files.push(file.to_string());
                        }
                    }
                }
            }
            let named: Vec<String> = request.files.iter().cloned().chain(files).collect();
            if !named.is_empty() {
                let mut definitions = 0;
                let Some(dir) = &dir else {
                    return Err(
                        "oload: the files must be uploaded first (POST /raw/remote-file) and \
                         the command name their dir"
                            .into(),
                    );
                };
                for name in &named {
                    let relative = crate::remote::relative_path(name)
                        .map_err(|e| format!("oload: {name:?}: {e}"))?;
                    let path = dir.join(&relative);
                    match std::fs::symlink_metadata(&path) {
                        Ok(meta) if meta.is_file() => {}
                        _ => {
                            return Err(format!(
                                "oload: {name:?} was not uploaded into {}",
                                request.dir.as_deref().unwrap_or_default()
                            ))
                        }
                    }
                    // Definitions are loaded; the rest (code) is read through them.
                    if is_definition(name) {
                        argv.push(relative.display().to_string());
                        definitions += 1;
                    }
                }
                if definitions == 0 {
                    return Err(format!(
                        "oload: no definition file among {}; `sluice load` reads *.qwf.yaml, \
                         *.qstep.yaml, *.qerrors.yaml, *.qsd.yaml and *.qjob.yaml, and the \
                         code they name",
                        named.join(", ")
                    ));
                }
            }
            let notes = if request.opts.is_empty() {
                Vec::new()
            } else {
                let names: Vec<&str> = request.opts.keys().map(String::as_str).collect();
                vec![format!(
                    "oload: options not used here: {}",
                    names.join(", ")
                )]
            };
            Ok(Plan { argv, dir, notes })
        }
        other => Err(format!(
            "unknown command {other:?}; the commands: {}",
            COMMANDS.join(", ")
        )),
    }
}

/// `GET /remote-command`.
pub(crate) async fn open(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match super::accept(&gateway, upgrade, &headers) {
        Ok(upgrade) => upgrade,
        Err(response) => return *response,
    };
    let refusal = match super::token_of(&headers, &uri) {
        None => Some(
            "/remote-command needs a token: GET /api/latest/system/wstoken, then send it \
             as the Qorus-Token header or as ?token=",
        ),
        Some(token) if !gateway.local.tokens.redeem(&token) => Some(
            "the token is unknown, expired or used already: get a new one with \
             GET /api/latest/system/wstoken",
        ),
        Some(_) => None,
    };
    if let Some(desc) = refusal {
        return super::refused(&headers, ApiError::new("AUTHENTICATION-ERROR", desc));
    }
    upgrade.on_upgrade(move |socket| session(gateway, socket))
}

/// The socket's side of a command: output messages, and whether the client is still there.
struct Output {
    socket: WebSocket,
}

impl Output {
    async fn text(&mut self, data: &str) -> Result<(), Gone> {
        let message = crate::format::to_yaml(&json!({"msgtype": "text-output", "data": data}))
            .unwrap_or_default();
        super::send(&mut self.socket, Message::Text(message.into())).await
    }
}

async fn session(gateway: Arc<Gateway>, socket: WebSocket) {
    let mut out = Output { socket };
    let mut stopping = gateway.local.stopping.clone();
    let first = tokio::select! {
        first = tokio::time::timeout(COMMAND_WAIT, first_text(&mut out.socket)) => first,
        _ = super::stopped(&mut stopping) => {
            return super::close(&mut out.socket, close::GOING_AWAY, "the gateway is stopping").await;
        }
    };
    let text = match first {
        Ok(Ok(text)) => text,
        Ok(Err(None)) => return,
        Ok(Err(Some((code, reason)))) => return super::close(&mut out.socket, code, &reason).await,
        Err(_) => {
            let reason = format!("no command within {} s", COMMAND_WAIT.as_secs());
            return super::close(&mut out.socket, close::POLICY, &reason).await;
        }
    };
    let code = match CommandRequest::parse(&text) {
        Err(message) => {
            if out.text(&format!("{message}\n")).await.is_err() {
                return;
            }
            1
        }
        Ok(request) => {
            tracing::info!(command = %request.cmd, args = request.args.len(), "remote command");
            match run(&gateway, &mut out, &request, &mut stopping).await {
                Ok(code) => code,
                Err(gone) => return super::end(&mut out.socket, gone, "the output").await,
            }
        }
    };
    if out
        .text(&format!("-- process terminated with exit code {code} --"))
        .await
        .is_ok()
    {
        super::close(&mut out.socket, close::NORMAL, "done").await;
    }
}

/// The first text (or binary UTF-8) message; `Err(None)`: the client went away,
/// `Err(Some(close))`: close with that.
async fn first_text(socket: &mut WebSocket) -> Result<String, Option<(u16, String)>> {
    loop {
        match Incoming::of(socket.recv().await) {
            Incoming::Text(text) => return Ok(text),
            Incoming::Binary => {
                return Err(Some((
                    close::UNSUPPORTED,
                    "send the command as a text message (YAML)".into(),
                )))
            }
            Incoming::Control => continue,
            Incoming::Closed => return Err(None),
            Incoming::Broken(code, reason) => return Err(Some((code, reason))),
        }
    }
}

/// Runs a command; its exit code.
async fn run(
    gateway: &Gateway,
    out: &mut Output,
    request: &CommandRequest,
    stopping: &mut watch::Receiver<bool>,
) -> Result<i32, Gone> {
    if request.cmd == "ostatus" {
        return ostatus(gateway, out, request).await;
    }
    let plan = match plan(request, &gateway.local.home) {
        Ok(plan) => plan,
        Err(message) => {
            out.text(&format!("{message}\n")).await?;
            return Ok(1);
        }
    };
    for note in &plan.notes {
        out.text(&format!("{note}\n")).await?;
    }
    sluice(gateway, out, &plan, stopping).await
}

async fn ostatus(
    gateway: &Gateway,
    out: &mut Output,
    request: &CommandRequest,
) -> Result<i32, Gone> {
    if !request.args.is_empty() {
        out.text("ostatus takes no arguments here\n").await?;
        return Ok(1);
    }
    let timeout = Duration::from_secs(15);
    let status = gateway
        .call("omq.system.get-status", Vec::new(), timeout, 0)
        .await
        .and_then(|body| {
            SystemStatus::decode(body.as_slice())
                .map_err(|e| ApiError::new("INTERNAL-ERROR", e.to_string()))
        });
    let interfaces = gateway
        .call("omq.system.list-interfaces", Vec::new(), timeout, 0)
        .await
        .and_then(|body| {
            InterfaceList::decode(body.as_slice())
                .map_err(|e| ApiError::new("INTERNAL-ERROR", e.to_string()))
        });
    match (status, interfaces) {
        (Ok(status), Ok(interfaces)) => {
            out.text(&report::status_text(&status)).await?;
            out.text(&report::interfaces_text(&interfaces)).await?;
            Ok(0)
        }
        (Err(error), _) | (_, Err(error)) => {
            out.text(&format!("ostatus: {error}\n")).await?;
            Ok(1)
        }
    }
}

/// Forwards one pipe's lines to `lines`.
async fn pipe(from: impl AsyncRead + Unpin, lines: mpsc::Sender<Vec<u8>>) {
    let mut from = BufReader::new(from);
    loop {
        let mut line = Vec::new();
        match from.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if lines.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `sluice` as planned, streaming its stdout and stderr; its exit code.
async fn sluice(
    gateway: &Gateway,
    out: &mut Output,
    plan: &Plan,
    stopping: &mut watch::Receiver<bool>,
) -> Result<i32, Gone> {
    let local = &gateway.local;
    if local.home.as_os_str().is_empty() {
        out.text("the gateway does not know the instance home\n")
            .await?;
        return Ok(1);
    }
    let program = local.tools.join("sluice");
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&plan.argv)
        .env("OMQ_DIR", &local.home)
        .current_dir(plan.dir.as_deref().unwrap_or(&local.home))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            out.text(&format!("cannot run {}: {err}\n", program.display()))
                .await?;
            return Ok(1);
        }
    };
    let (lines, mut output) = mpsc::channel(64);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(pipe(stdout, lines.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(pipe(stderr, lines.clone()));
    }
    drop(lines);
    let deadline = tokio::time::sleep(COMMAND_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            line = output.recv() => match line {
                Some(line) => out.text(&String::from_utf8_lossy(&line)).await?,
                None => break,
            },
            received = out.socket.recv() => match Incoming::of(received) {
                // The client left: the command is stopped (kill_on_drop).
                Incoming::Closed | Incoming::Broken(..) => return Err(Gone::Closed),
                _ => {}
            },
            _ = &mut deadline => {
                let _ = child.kill().await;
                out.text(&format!("stopped after {} s\n", COMMAND_TIMEOUT.as_secs())).await?;
                break;
            },
            _ = super::stopped(stopping) => {
                let _ = child.kill().await;
                out.text("stopped: the gateway is stopping\n").await?;
                break;
            },
        }
    }
    let status = match child.wait().await {
        Ok(status) => status,
        Err(err) => {
            out.text(&format!("cannot wait for sluice: {err}\n"))
                .await?;
            return Ok(1);
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_from_yaml_or_json() {
        let r = CommandRequest::parse(
            "cmd: oload\nargs: [a.qjob.yaml, -v]\nfiles:\n  - a.qjob.yaml\ndir: d\nopts: {x: 1}\n",
        )
        .unwrap();
        assert_eq!(r.cmd, "oload");
        assert_eq!(r.args, vec!["a.qjob.yaml", "-v"]);
        assert_eq!(r.files, vec!["a.qjob.yaml"]);
        assert_eq!(r.dir.as_deref(), Some("d"));
        let r = CommandRequest::parse(r#"{"cmd": "ostatus"}"#).unwrap();
        assert_eq!(
            r,
            CommandRequest {
                cmd: "ostatus".into(),
                ..Default::default()
            }
        );
        for bad in [
            "",
            "- a",
            "cmd: ''",
            "args: []",
            "cmd: x\nshell: rm -rf /",
            "cmd: x\nargs: [[1]]",
        ] {
            assert!(CommandRequest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_uploaded_files_and_offered_options_reach_sluice() {
        let home = tempfile::tempdir().unwrap();
        let name = "0123456789abcdef0123456789abcdef";
        let dir = home.path().join("user/remote").join(name);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("J-1.0.qjob.yaml"), "x").unwrap();
        std::fs::write(dir.join("sub/jobs.py"), "x").unwrap();
        let request = |args: &[&str], files: &[&str], dir: Option<&str>| CommandRequest {
            cmd: "oload".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            files: files.iter().map(|s| s.to_string()).collect(),
            dir: dir.map(String::from),
            ..Default::default()
        };
        let p = plan(
            &request(
                &["-v", "J-1.0.qjob.yaml"],
                &["J-1.0.qjob.yaml", "sub/jobs.py"],
                Some(name),
            ),
            home.path(),
        )
        .unwrap();
        assert_eq!(
            p.argv,
            vec!["load", "--verbose", "J-1.0.qjob.yaml"],
            "code is not an argument"
        );
        assert_eq!(p.dir.as_deref(), Some(dir.as_path()));
        let p = plan(&request(&["--delete", "job:J:1.0"], &[], None), home.path()).unwrap();
        assert_eq!(p.argv, vec!["load", "--delete", "job:J:1.0"]);
        for (args, files, dir) in [
            (&["--omq-dir=/"][..], &[][..], Some(name)),
            (&["-o", "qorus.systemdb=x"], &[], Some(name)),
            (&[], &["../../etc/options"], Some(name)),
            (&[], &["/etc/passwd"], Some(name)),
            (&[], &["missing.yaml"], Some(name)),
            (&[], &["J-1.0.qjob.yaml"], None),
            (&[], &["J-1.0.qjob.yaml"], Some("../..")),
            (&[], &["sub/jobs.py"], Some(name)),
            (&["--delete"], &[], None),
        ] {
            assert!(
                plan(&request(args, files, dir), home.path()).is_err(),
                "{args:?} {files:?} {dir:?}"
            );
        }
        let unknown = CommandRequest {
            cmd: "rm".into(),
            ..Default::default()
        };
        assert!(plan(&unknown, home.path())
            .unwrap_err()
            .contains("unknown command"));
        let view = CommandRequest {
            cmd: "oview".into(),
            ..Default::default()
        };
        assert_eq!(
            plan(&view, home.path()).unwrap().argv,
            vec!["load", "--list"]
        );
    }
}

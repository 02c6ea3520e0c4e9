//! `qorus.http-server` and `qorus.http-secure-server`: the gateway's listeners.
//!
//! Qorus's syntax: a comma-separated list of `[HOST:]PORT[{cert=FILE;key=FILE}]`, where
//! HOST is an IPv4 address, a host name or a bracketed IPv6 address. Commas inside braces
//! do not split entries.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::resolve_path;
use crate::home::Home;

/// The port the gateway listens on, on all interfaces, when no listener is configured
/// (Qorus's default).
pub const DEFAULT_HTTP_PORT: u16 = 8001;

/// The certificate chain and private key of an HTTPS listener (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    /// The same file as `cert` when the option named none: Qorus allows one PEM file to
    /// hold both.
    pub key: PathBuf,
}

/// One listener of the HTTP gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListener {
    /// `None` listens on all interfaces. An IPv6 address is kept without its brackets.
    pub host: Option<String>,
    pub port: u16,
    /// `Some` for HTTPS.
    pub tls: Option<TlsFiles>,
}

impl HttpListener {
    /// Qorus's default: plain HTTP on port 8001, all interfaces.
    pub fn default_plain() -> HttpListener {
        HttpListener {
            host: None,
            port: DEFAULT_HTTP_PORT,
            tls: None,
        }
    }
}

/// The listener in the option's own syntax, so it can be logged and parsed back.
impl fmt::Display for HttpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) if host.contains(':') => write!(f, "[{host}]:")?,
            Some(host) => write!(f, "{host}:")?,
            None => {}
        }
        write!(f, "{}", self.port)?;
        if let Some(tls) = &self.tls {
            write!(
                f,
                "{{cert={};key={}}}",
                tls.cert.display(),
                tls.key.display()
            )?;
        }
        Ok(())
    }
}

/// Parses a listener option; `secure` selects the `qorus.http-secure-server` rules. An
/// empty value is no listeners.
pub(crate) fn parse_listeners(
    value: &str,
    home: &Home,
    secure: bool,
) -> Result<Vec<HttpListener>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_entries(value)?
        .into_iter()
        .map(|entry| {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(format!(
                    "empty listener entry in \"{}\" (a stray comma?)",
                    shown(value)
                ));
            }
            parse_entry(entry, home, secure)
        })
        .collect()
}

/// Splits on the commas outside braces.
fn split_entries(value: &str) -> Result<Vec<&str>, String> {
    let mut entries = Vec::new();
    let mut start = 0;
    let mut in_braces = false;
    for (i, c) in value.char_indices() {
        match c {
            '{' if in_braces => {
                return Err(format!(
                    "nested '{{' in listener \"{}\"",
                    shown(value[start..].trim())
                ))
            }
            '{' => in_braces = true,
            '}' if !in_braces => {
                return Err(format!(
                    "'}}' without '{{' in listener \"{}\"",
                    shown(value[start..].trim())
                ))
            }
            '}' => in_braces = false,
            ',' if !in_braces => {
                entries.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_braces {
        return Err(format!(
            "unterminated '{{' in listener \"{}\"",
            shown(value[start..].trim())
        ));
    }
    entries.push(&value[start..]);
    Ok(entries)
}

/// What an error may quote of a listener: all of it, unless it carries a password.
fn shown(entry: &str) -> String {
    if entry.to_ascii_lowercase().contains("password") {
        match entry.split_once('{') {
            Some((address, _)) => format!("{address}{{...}}"),
            None => "...".to_owned(),
        }
    } else {
        entry.to_owned()
    }
}

fn parse_entry(entry: &str, home: &Home, secure: bool) -> Result<HttpListener, String> {
    let (address, settings) = match entry.split_once('{') {
        Some((address, rest)) => {
            // split_entries guarantees the brace is closed.
            let (inside, after) = rest.split_once('}').unwrap_or((rest, ""));
            if !after.trim().is_empty() {
                return Err(format!(
                    "unexpected text after '}}' in listener \"{}\"",
                    shown(entry)
                ));
            }
            (address.trim(), Some(inside))
        }
        None => (entry, None),
    };
    let (host, port) = parse_address(address, entry)?;

    let tls = match (secure, settings) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(format!(
                "listener \"{}\" has TLS settings, but qorus.http-server listeners are plain HTTP; \
                 use qorus.http-secure-server for TLS",
                shown(entry)
            ))
        }
        (true, None) => return Err(missing_cert(entry)),
        (true, Some(settings)) => Some(parse_tls(settings, entry, home)?),
    };
    Ok(HttpListener { host, port, tls })
}

fn missing_cert(entry: &str) -> String {
    format!(
        "listener \"{}\" has no certificate: qorus.http-secure-server listeners need \
         [HOST:]PORT{{cert=FILE;key=FILE}}",
        shown(entry)
    )
}

fn parse_address(address: &str, entry: &str) -> Result<(Option<String>, u16), String> {
    if address.is_empty() {
        return Err(format!("listener \"{}\" has no port", shown(entry)));
    }
    if let Some(rest) = address.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(format!("unterminated '[' in listener \"{}\"", shown(entry)));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "\"{ip}\" in listener \"{}\" is not an IPv6 address",
                shown(entry)
            ));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!(
                "listener \"{}\" needs a port after the address, e.g. [::1]:8001",
                shown(entry)
            ));
        };
        return Ok((Some(ip.to_owned()), parse_port(port, entry)?));
    }
    match address.rsplit_once(':') {
        None => Ok((None, parse_port(address, entry)?)),
        Some((host, port)) => {
            let host = host.trim();
            if host.contains(':') {
                return Err(format!(
                    "the IPv6 address in listener \"{}\" must be in brackets, e.g. [::1]:8001",
                    shown(entry)
                ));
            }
            let is_host_name = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if host.parse::<Ipv4Addr>().is_err() && !is_host_name {
                return Err(format!(
                    "\"{host}\" in listener \"{}\" is not an IPv4 address or host name",
                    shown(entry)
                ));
            }
            Ok((Some(host.to_owned()), parse_port(port, entry)?))
        }
    }
}

fn parse_port(port: &str, entry: &str) -> Result<u16, String> {
    let port = port.trim();
    match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "bad port \"{port}\" in listener \"{}\": expected 1-65535",
            shown(entry)
        )),
    }
}

fn parse_tls(settings: &str, entry: &str, home: &Home) -> Result<TlsFiles, String> {
    let mut cert = None;
    let mut key = None;
    for item in settings.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name.trim(), value.trim()),
            None => (item, ""),
        };
        let slot = match name {
            "cert" => &mut cert,
            "key" => &mut key,
            // Decrypting keys would mean a password in the options file; an unencrypted key
            // readable only by the service user is no weaker and keeps secrets out of it.
            "key-password" => {
                return Err(format!(
                    "key-password in listener \"{}\" is not supported: use an unencrypted key \
                     file readable only by the user running Sluice",
                    shown(entry)
                ))
            }
            other => {
                return Err(format!(
                    "unknown setting \"{other}\" in listener \"{}\": \
                     expected cert=FILE or key=FILE",
                    shown(entry)
                ))
            }
        };
        if value.is_empty() {
            return Err(format!(
                "{name} in listener \"{}\" needs a file: {name}=FILE",
                shown(entry)
            ));
        }
        if slot.is_some() {
            return Err(format!(
                "{name} is given twice in listener \"{}\"",
                shown(entry)
            ));
        }
        *slot = Some(resolve_path(value, home));
    }
    let Some(cert) = cert else {
        return Err(missing_cert(entry));
    };
    check_file(&cert, "certificate")?;
    let key = match key {
        Some(key) => {
            check_file(&key, "key")?;
            key
        }
        None => cert.clone(),
    };
    Ok(TlsFiles { cert, key })
}

fn check_file(path: &Path, what: &str) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(format!(
            "{what} file {} is not a regular file",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{what} file {} does not exist", path.display()))
        }
        Err(e) => Err(format!(
            "{what} file {} cannot be read: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(value: &str) -> Result<Vec<HttpListener>, String> {
        parse_listeners(value, &Home::new("/nonexistent-omq"), false)
    }

    fn listener(host: Option<&str>, port: u16) -> HttpListener {
        HttpListener {
            host: host.map(str::to_owned),
            port,
            tls: None,
        }
    }

    #[test]
    fn plain_addresses() {
        assert_eq!(plain("8001").unwrap(), vec![listener(None, 8001)]);
        assert_eq!(
            plain("127.0.0.1:8001").unwrap(),
            vec![listener(Some("127.0.0.1"), 8001)]
        );
        assert_eq!(
            plain("[::1]:8001").unwrap(),
            vec![listener(Some("::1"), 8001)]
        );
        assert_eq!(
            plain(" localhost:80 , 8002,[fe80::1]:9 ").unwrap(),
            vec![
                listener(Some("localhost"), 80),
                listener(None, 8002),
                listener(Some("fe80::1"), 9)
            ]
        );
        assert!(plain("").unwrap().is_empty());
    }

    #[test]
    fn display_round_trips() {
        for value in ["8001", "127.0.0.1:8001", "[::1]:8001", "example.com:1"] {
            let parsed = plain(value).unwrap();
            assert_eq!(parsed[0].to_string(), value);
        }
    }

    #[test]
    fn bad_ports_and_addresses() {
        for (value, expected) in [
            ("0", "bad port \"0\""),
            ("70000", "bad port \"70000\""),
            ("127.0.0.1:", "bad port \"\""),
            ("http", "bad port \"http\""),
            ("+80", "bad port \"+80\""),
            ("::1:8001", "must be in brackets"),
            ("[::1]", "needs a port"),
            ("[::1:8001", "unterminated '['"),
            ("[nope]:1", "not an IPv6 address"),
            ("bad host:1", "not an IPv4 address or host name"),
            ("8001,", "empty listener entry"),
            ("8001,,8002", "empty listener entry"),
        ] {
            let err = plain(value).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn plain_listener_refuses_tls_settings() {
        let err = plain("8001{cert=/x/cert.pem}").unwrap_err();
        assert!(
            err.contains(
                "qorus.http-server listeners are plain HTTP; use qorus.http-secure-server for TLS"
            ),
            "{err}"
        );
    }

    #[test]
    fn secure_listeners_of_the_reference_example() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        for name in ["cert1.pem", "key1.pem", "cert2.pem", "key2.pem"] {
            std::fs::write(etc.join(name), "pem").unwrap();
        }
        let home = Home::new(dir.path());
        let value = "192.168.20.77:8085{cert=$OMQ_DIR/etc/cert1.pem;key=$OMQ_DIR/etc/key1.pem},\
                     8086{cert=$OMQ_DIR/etc/cert2.pem;key=$OMQ_DIR/etc/key2.pem}";
        let listeners = parse_listeners(value, &home, true).unwrap();
        assert_eq!(
            listeners,
            vec![
                HttpListener {
                    host: Some("192.168.20.77".to_owned()),
                    port: 8085,
                    tls: Some(TlsFiles {
                        cert: etc.join("cert1.pem"),
                        key: etc.join("key1.pem"),
                    }),
                },
                HttpListener {
                    host: None,
                    port: 8086,
                    tls: Some(TlsFiles {
                        cert: etc.join("cert2.pem"),
                        key: etc.join("key2.pem"),
                    }),
                },
            ]
        );

        // Without a key the cert file holds both; a relative path is under $OMQ_DIR.
        let listeners = parse_listeners("[::1]:8443{cert=etc/cert1.pem;}", &home, true).unwrap();
        assert_eq!(
            listeners[0].tls,
            Some(TlsFiles {
                cert: etc.join("cert1.pem"),
                key: etc.join("cert1.pem"),
            })
        );
    }

    #[test]
    fn secure_listener_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "pem").unwrap();
        let home = Home::new(dir.path());
        let missing = dir.path().join("nope.pem");
        let cases = [
            (
                "8443{cert=$OMQ_DIR/cert.pem".to_owned(),
                "unterminated '{' in listener \"8443{cert=$OMQ_DIR/cert.pem\"".to_owned(),
            ),
            (
                "8443{cert=$OMQ_DIR/nope.pem}".to_owned(),
                format!("certificate file {} does not exist", missing.display()),
            ),
            (
                "8443{cert=$OMQ_DIR/cert.pem;key=$OMQ_DIR/nope.pem}".to_owned(),
                format!("key file {} does not exist", missing.display()),
            ),
            (
                "8443{cert=$OMQ_DIR}".to_owned(),
                "is not a regular file".to_owned(),
            ),
            ("8443".to_owned(), "has no certificate".to_owned()),
            (
                "8443{key=$OMQ_DIR/cert.pem}".to_owned(),
                "has no certificate".to_owned(),
            ),
            (
                "8443{cert=$OMQ_DIR/cert.pem;chain=x}".to_owned(),
                "unknown setting \"chain\"".to_owned(),
            ),
            (
                "8443{cert=a;cert=b}".to_owned(),
                "cert is given twice".to_owned(),
            ),
            ("8443{cert=}".to_owned(), "needs a file".to_owned()),
            (
                "8443{cert=a}x".to_owned(),
                "unexpected text after '}'".to_owned(),
            ),
            ("8443}".to_owned(), "'}' without '{'".to_owned()),
        ];
        for (value, expected) in cases {
            let err = parse_listeners(&value, &home, true).unwrap_err();
            assert!(err.contains(&expected), "{value}: {err}");
        }

        let err = parse_listeners(
            "8443{cert=$OMQ_DIR/cert.pem;key-password=hunter2}",
            &home,
            true,
        )
        .unwrap_err();
        assert!(err.contains("key-password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn commas_inside_braces_do_not_split() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a,b.pem"), "pem").unwrap();
        let home = Home::new(dir.path());
        let listeners =
            parse_listeners("8443{cert=a,b.pem},8444{cert=a,b.pem}", &home, true).unwrap();
        assert_eq!(listeners.len(), 2);
        assert_eq!(
            listeners[1].tls.as_ref().map(|t| t.cert.clone()),
            Some(dir.path().join("a,b.pem"))
        );
    }
}

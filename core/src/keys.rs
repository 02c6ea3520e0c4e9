//! CURVE keypairs and the cluster key file.
//!
//! The cluster key file holds 32 raw bytes, the CURVE secret key, exactly as Qorus's own
//! file does; the public key is derived from it, so the file cannot disagree with itself.
//! Anyone who reads the file can impersonate every process of the cluster, hence the
//! permission check on load and the create-with-0600 on write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::raw::{c_char, c_int};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cluster key file {} does not exist: run `sluice keys init`", path.display())]
    NotFound { path: PathBuf },
    #[error("cluster key file {} is readable by others (mode {mode:04o}): run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cluster key file {} must hold exactly 32 bytes (the CURVE secret key), found {len}", path.display())]
    WrongSize { path: PathBuf, len: usize },
    #[error("cluster key file {} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a Z85-encoded 32-byte CURVE key: {0}")]
    BadZ85(String),
    #[error("this libzmq has no CURVE support (build it with libsodium): cannot make or derive CURVE keys")]
    NoCurve,
}

/// A CURVE keypair; the secret never appears in `Debug` and is wiped when dropped.
#[derive(Clone)]
pub struct KeyPair {
    public: [u8; 32],
    secret: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyPair {{ public: {}, secret: *** }}",
            z85_encode(&self.public)
        )
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        // Volatile so the compiler cannot drop the wipe of a value that is never read again.
        for b in self.secret.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference into `self.secret`.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl KeyPair {
    /// A fresh keypair from libzmq's (libsodium's) generator.
    ///
    /// # Panics
    /// Only when libzmq was built without CURVE, which every Sluice process refuses at
    /// start ([`crate::bus::curve_available`]); use [`KeyPair::try_generate`] to get an error instead.
    pub fn generate() -> KeyPair {
        match Self::try_generate() {
            Ok(pair) => pair,
            Err(err) => panic!("{err}"),
        }
    }

    /// A fresh keypair, or [`KeyError::NoCurve`] when libzmq cannot make one.
    pub fn try_generate() -> Result<KeyPair, KeyError> {
        let pair = zmq::CurveKeyPair::new().map_err(|_| KeyError::NoCurve)?;
        Ok(KeyPair {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// The keypair of a secret key: the public key is X25519(secret, basepoint).
    ///
    /// # Panics
    /// Only when libzmq was built without CURVE; see [`KeyPair::try_from_secret`].
    pub fn from_secret(secret: [u8; 32]) -> KeyPair {
        match Self::try_from_secret(secret) {
            Ok(pair) => pair,
            Err(err) => panic!("{err}"),
        }
    }

    /// The keypair of a secret key, or [`KeyError::NoCurve`] when libzmq cannot derive it.
    pub fn try_from_secret(secret: [u8; 32]) -> Result<KeyPair, KeyError> {
        Ok(KeyPair {
            public: curve_public(&secret)?,
            secret,
        })
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    pub fn public_z85(&self) -> String {
        z85_encode(&self.public)
    }

    pub fn secret_z85(&self) -> Secret {
        Secret::new(z85_encode(&self.secret))
    }

    /// The HTTP gateway's keypair, derived from the cluster keypair: SHA-256 of a fixed
    /// label and the cluster secret. Every process that holds the cluster key file
    /// computes the same public key, so an interface process knows the gateway's direct
    /// calls apart from the master's from its first moment, across restarts of the
    /// gateway and of the master, with no key exchange to race.
    pub fn gateway(&self) -> Result<KeyPair, KeyError> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(b"sluice http-gateway CURVE key v1\0");
        hash.update(self.secret);
        KeyPair::try_from_secret(hash.finalize().into())
    }
}

extern "C" {
    // libzmq >= 4.2.1; the zmq crate does not wrap it and zmq-sys does not re-export it.
    // The zmq crate already links libzmq, so declaring the symbol is all that is needed.
    fn zmq_curve_public(z85_public_key: *mut c_char, z85_secret_key: *const c_char) -> c_int;
}

fn curve_public(secret: &[u8; 32]) -> Result<[u8; 32], KeyError> {
    let mut secret_z85 = [0u8; 41];
    secret_z85[..40].copy_from_slice(z85_encode(secret).as_bytes());
    let mut public_z85 = [0u8; 41];
    // SAFETY: both buffers are 41 bytes (40 Z85 characters plus NUL), as the libzmq
    // manual requires; the secret is NUL-terminated and libzmq writes at most 41 bytes.
    let rc = unsafe {
        zmq_curve_public(
            public_z85.as_mut_ptr().cast::<c_char>(),
            secret_z85.as_ptr().cast::<c_char>(),
        )
    };
    secret_z85.fill(0);
    if rc != 0 {
        return Err(KeyError::NoCurve);
    }
    let text = std::str::from_utf8(&public_z85[..40]).map_err(|_| KeyError::NoCurve)?;
    z85_decode(text)
}

const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Z85 (ZeroMQ RFC 32) text of a 32-byte key: 40 printable characters.
pub fn z85_encode(key: &[u8; 32]) -> String {
    let mut out = String::with_capacity(40);
    for chunk in key.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut digits = [0u8; 5];
        for d in digits.iter_mut().rev() {
            *d = Z85[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&c| c as char));
    }
    out
}

/// The 32-byte key of 40 Z85 characters; surrounding whitespace is ignored so a key pasted
/// from a terminal or read from a file with a newline still decodes.
pub fn z85_decode(text: &str) -> Result<[u8; 32], KeyError> {
    let trimmed = text.trim();
    let bad = |why: &str| KeyError::BadZ85(format!("{why} (got {} characters)", trimmed.len()));
    if trimmed.len() != 40 {
        return Err(bad("expected 40 characters"));
    }
    let mut key = [0u8; 32];
    for (chunk, out) in trimmed
        .as_bytes()
        .chunks_exact(5)
        .zip(key.chunks_exact_mut(4))
    {
        let mut value: u64 = 0;
        for &c in chunk {
            let digit = Z85
                .iter()
                .position(|&z| z == c)
                .ok_or_else(|| bad("a character outside the Z85 alphabet"))?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).map_err(|_| bad("a 5-character group above 2^32"))?;
        out.copy_from_slice(&value.to_be_bytes());
    }
    Ok(key)
}

/// Loads the cluster key file: 32 raw bytes, the CURVE secret key, mode 0600 (or stricter).
pub fn load_key_file(path: &Path) -> Result<KeyPair, KeyError> {
    let io = |source: std::io::Error| KeyError::Io {
        path: path.into(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound { path: path.into() })
        }
        Err(e) => return Err(io(e)),
    };
    // The checks use the opened file, not the path, so a swap between them cannot fool them.
    let meta = file.metadata().map_err(io)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.into(),
            mode,
        });
    }
    if meta.len() != 32 {
        return Err(KeyError::WrongSize {
            path: path.into(),
            len: usize::try_from(meta.len()).unwrap_or(usize::MAX),
        });
    }
    let mut secret = [0u8; 32];
    // One byte more than expected so a file that grew since the stat is still caught.
    let mut buf = Vec::with_capacity(33);
    (&mut file).take(33).read_to_end(&mut buf).map_err(io)?;
    if buf.len() != 32 {
        let len = buf.len();
        buf.fill(0);
        return Err(KeyError::WrongSize {
            path: path.into(),
            len,
        });
    }
    secret.copy_from_slice(&buf);
    buf.fill(0);
    KeyPair::try_from_secret(secret)
}

/// Writes a fresh cluster key file (`sluice keys init`) and returns its keypair. The file
/// is created exclusively with mode 0600 from the start, so there is no moment when it is
/// readable by others, and an existing key is never overwritten.
pub fn write_key_file(path: &Path) -> Result<KeyPair, KeyError> {
    let io = |p: &Path, source: std::io::Error| KeyError::Io {
        path: p.into(),
        source,
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let pair = KeyPair::try_generate()?;
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyError::Exists { path: path.into() })
        }
        Err(e) => return Err(io(path, e)),
    };
    let written = file.write_all(pair.secret()).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // A half-written key would later fail as WrongSize; better leave nothing.
        let _ = std::fs::remove_file(path);
        return Err(io(path, e));
    }
    // Make the new directory entry durable too; a failure here loses nothing already written.
    if let Some(dir) = parent {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn z85_matches_the_rfc_test_vector() {
        // ZeroMQ RFC 32: these 8 bytes encode as "HelloWorld".
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&[0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
        let text = z85_encode(&key);
        assert_eq!(&text[..10], "HelloWorld");
        assert_eq!(text.len(), 40);
        assert_eq!(z85_decode(&text).unwrap(), key);
        assert_eq!(z85_decode(&format!(" {text}\n")).unwrap(), key);
        // And the library agrees with this implementation.
        assert_eq!(zmq::z85_encode(&key).unwrap(), text);
    }

    #[test]
    fn z85_refuses_bad_text() {
        assert!(matches!(z85_decode("short"), Err(KeyError::BadZ85(_))));
        let bad_char = format!("{}~", "0".repeat(39));
        assert!(matches!(z85_decode(&bad_char), Err(KeyError::BadZ85(_))));
        // "#####" is 85^5 - 1, above 2^32.
        let overflow = format!("#####{}", "0".repeat(35));
        assert!(matches!(z85_decode(&overflow), Err(KeyError::BadZ85(_))));
        let err = z85_decode("short").unwrap_err().to_string();
        assert!(err.contains("40 characters"), "{err}");
    }

    #[test]
    fn the_gateway_key_is_derived_stable_and_distinct() {
        let cluster = KeyPair::generate();
        let gateway = cluster.gateway().unwrap();
        assert_eq!(gateway.public(), cluster.gateway().unwrap().public());
        assert_ne!(gateway.public(), cluster.public());
        assert_ne!(gateway.secret(), cluster.secret());
        assert_eq!(
            KeyPair::from_secret(*gateway.secret()).public(),
            gateway.public()
        );
        let other = KeyPair::generate().gateway().unwrap();
        assert_ne!(other.public(), gateway.public());
    }

    #[test]
    fn derived_public_matches_generated_pair() {
        let pair = KeyPair::generate();
        assert_ne!(pair.public(), &[0u8; 32]);
        let derived = KeyPair::from_secret(*pair.secret());
        assert_eq!(derived.public(), pair.public());
        assert_eq!(
            z85_decode(pair.secret_z85().expose()).unwrap(),
            *pair.secret()
        );
        assert_ne!(KeyPair::generate().public(), pair.public());
    }

    #[test]
    fn debug_hides_the_secret() {
        let pair = KeyPair::generate();
        let shown = format!("{pair:?} {}", pair.secret_z85());
        assert!(shown.contains(&pair.public_z85()));
        assert!(!shown.contains(pair.secret_z85().expose()));
    }

    #[test]
    fn write_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/sub/cluster.key");
        let written = write_key_file(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 32);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), written.secret());
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.public(), written.public());
        assert_eq!(loaded.secret(), written.secret());
    }

    #[test]
    fn write_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let first = write_key_file(&path).unwrap();
        assert!(matches!(
            write_key_file(&path),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(load_key_file(&path).unwrap().public(), first.public());
    }

    #[test]
    fn load_refuses_group_or_other_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        write_key_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match load_key_file(&path) {
                Err(KeyError::Permissions { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: expected Permissions, got {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        load_key_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        load_key_file(&path).unwrap();
        let err = {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            load_key_file(&path).unwrap_err().to_string()
        };
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn load_reports_missing_and_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.key");
        let err = load_key_file(&missing).unwrap_err();
        assert!(matches!(err, KeyError::NotFound { .. }));
        assert!(err.to_string().contains("sluice keys init"), "{err}");

        let short = dir.path().join("short.key");
        std::fs::write(&short, [7u8; 31]).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_key_file(&short),
            Err(KeyError::WrongSize { len: 31, .. })
        ));

        // A Z85 text file (as some tools write) is 40 bytes, not a raw key.
        let text = dir.path().join("text.key");
        std::fs::write(&text, KeyPair::generate().secret_z85().expose()).unwrap();
        std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_key_file(&text),
            Err(KeyError::WrongSize { len: 40, .. })
        ));
    }
}

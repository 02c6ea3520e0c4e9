//! `sluice keys`: the cluster key file and the registered client keys of the cluster API.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use sluice_core::keys::{self, KeyPair};
use sluice_core::options::Options;

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create the cluster key file (qorus.network-key): 32 random bytes, mode 0600.
    Init,
    /// Print the cluster's public key (Z85), which clients need to reach the master.
    Public,
    /// Make a client keypair for the cluster API (czmq/pyzmq certificate format).
    Gen {
        /// Write the certificate to FILE (mode 0600) and print only the public key.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Allow a client public key to use the cluster API as USER.
    Register {
        user: String,
        /// The client's Z85 public key (40 characters), as `sluice keys gen` prints it.
        /// (Z85 text may begin with '-', so it is never taken for an option.)
        #[arg(allow_hyphen_values = true)]
        public_key: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Revoke a registered client key; its next connection is refused.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        public_key: String,
    },
    /// List registered client keys.
    List,
}

pub async fn run(options: &Options, action: &KeysAction) -> anyhow::Result<u8> {
    match action {
        KeysAction::Init => {
            let path = options.network_key();
            let pair = keys::write_key_file(&path)?;
            println!("created cluster key {}", path.display());
            println!("public key: {}", pair.public_z85());
            Ok(0)
        }
        KeysAction::Public => {
            let pair = keys::load_key_file(&options.network_key())?;
            println!("{}", pair.public_z85());
            Ok(0)
        }
        KeysAction::Gen { out } => {
            let pair = KeyPair::generate();
            let cert = certificate(&pair);
            match out {
                Some(path) => {
                    write_private(path, cert.as_bytes())?;
                    println!("{}", pair.public_z85());
                    eprintln!(
                        "wrote {}; register the public key with `sluice keys register USER {}`",
                        path.display(),
                        pair.public_z85()
                    );
                }
                None => print!("{cert}"),
            }
            Ok(0)
        }
        KeysAction::Register {
            user,
            public_key,
            description,
        } => {
            keys::z85_decode(public_key).context("not a public key")?;
            let store = crate::open_store(options).await?;
            store
                .register_cluster_key(public_key, user, description.as_deref())
                .await?;
            println!("registered {public_key} for user {user}");
            store.close().await;
            Ok(0)
        }
        KeysAction::Revoke { public_key } => {
            let store = crate::open_store(options).await?;
            let revoked = store.revoke_cluster_key(public_key).await?;
            store.close().await;
            if !revoked {
                bail!("no registered, unrevoked key {public_key}");
            }
            println!("revoked {public_key}");
            Ok(0)
        }
        KeysAction::List => {
            let store = crate::open_store(options).await?;
            let list = store.list_cluster_keys().await?;
            store.close().await;
            println!(
                "{:<40}  {:<16}  {:<8}  DESCRIPTION",
                "PUBLIC KEY", "USER", "STATE"
            );
            for key in list {
                let state = if key.revoked.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<40}  {:<16}  {:<8}  {}",
                    key.public_key,
                    key.username,
                    state,
                    key.description.unwrap_or_default()
                );
            }
            Ok(0)
        }
    }
}

/// A czmq "secret certificate" (ZPL), the format pyzmq's `zmq.auth.load_certificate` and
/// czmq's `zcert_load` read.
pub fn certificate(pair: &KeyPair) -> String {
    format!(
        "#   ZeroMQ CURVE **Secret** Certificate (sluice keys gen)\n\
         #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n\
         metadata\n\
         curve\n    public-key = \"{}\"\n    secret-key = \"{}\"\n",
        pair.public_z85(),
        pair.secret_z85().expose()
    )
}

/// Reads a client keypair from a certificate file; refuses one others can read.
pub fn load_certificate(path: &Path) -> anyhow::Result<KeyPair> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:04o}): run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)?;
    let secret = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret-key"))
        .and_then(|rest| rest.split('"').nth(1))
        .with_context(|| format!("{} has no secret-key line", path.display()))?;
    Ok(KeyPair::from_secret(keys::z85_decode(secret)?))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

//! The `sluice` command line: one module per command group.

pub mod client;
pub mod jobs;
pub mod keys;
pub mod load;
pub mod orders;
pub mod runtime_options;
pub mod schema;
pub mod services;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_core::home::Home;
use sluice_core::options::Options;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version = sluice_core::VERSION,
    about = "Operate a Sluice instance: options, the system schema, and more",
    propagate_version = true
)]
pub struct Cli {
    /// The instance home: etc/options, log/, var/ (default: $OMQ_DIR, else ./var/omq).
    #[arg(long, global = true, env = "OMQ_DIR", value_name = "DIR")]
    pub omq_dir: Option<PathBuf>,

    /// Override an option from the options file, e.g. -o qorus.systemdb=sqlite:/tmp/x.db
    #[arg(
        short = 'o',
        long = "option",
        global = true,
        value_name = "qorus.NAME=VALUE"
    )]
    pub overrides: Vec<String>,

    /// Log what the command does to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(flatten)]
    pub connection: client::Connection,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every system option with its type, default and description.
    Options {
        /// Print the Markdown table that docs/options.md holds.
        #[arg(long)]
        markdown: bool,
        /// Print this instance's current values (from its options file) instead.
        #[arg(long, conflicts_with = "markdown")]
        values: bool,
    },
    /// Create, upgrade, verify or drop the system schema in qorus.systemdb (offline).
    Schema {
        #[command(subcommand)]
        action: schema::SchemaAction,
    },
    /// Load interface definitions (Qorus YAML) and their code into the system database.
    Load(load::LoadArgs),
    /// The cluster key and the client keys of the cluster API.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    #[command(flatten)]
    Client(client::ClientAction),
}

impl Cli {
    fn home(&self) -> Home {
        match &self.omq_dir {
            Some(dir) => Home::new(dir.clone()),
            None => Home::from_env(),
        }
    }

    fn options(&self) -> anyhow::Result<Options> {
        let home = self.home();
        Options::load(&home, &self.overrides).context("invalid options")
    }
}

/// Opens the system database for an offline command, refusing a schema this release does
/// not match (with the command that fixes it).
pub(crate) async fn open_store(options: &Options) -> anyhow::Result<sluice_core::store::Store> {
    let db = options.systemdb();
    let store = sluice_core::store::Store::open(&db, false)
        .await
        .with_context(|| format!("cannot open the system database {db}"))?;
    store.ensure_schema_current().await?;
    Ok(store)
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Options { markdown, values } => {
            if *values {
                for (name, value) in cli.options()?.describe() {
                    println!("{name}: {value}");
                }
            } else if *markdown {
                print!("{}", sluice_core::options::render_markdown());
            } else {
                print!("{}", sluice_core::options::render_text());
            }
            Ok(0)
        }
        Command::Schema { action } => schema::run(&cli.options()?, action).await,
        Command::Keys { action } => keys::run(&cli.options()?, action).await,
        Command::Load(args) => load::run(&cli.options()?, args).await,
        Command::Client(action) => client::run(&cli.options()?, &cli.connection, action).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z85_keys_beginning_with_a_hyphen_are_values_not_options() {
        let key = "-pQ8]fX2^Wd.L9zk{t4h+e}Ar0bMnC/7sYv%1uJ=";
        assert_eq!(key.len(), 40);
        for args in [
            vec!["sluice", "keys", "register", "ops", key],
            vec!["sluice", "keys", "revoke", key],
            vec!["sluice", "--server-key", key, "status"],
        ] {
            let parsed = Cli::try_parse_from(&args);
            assert!(parsed.is_ok(), "{args:?}: {:?}", parsed.err());
        }
    }
}

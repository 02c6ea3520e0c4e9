//! `sluice schema`: the schema tool. Works offline, straight against `qorus.systemdb`.

use anyhow::{bail, Context};
use clap::Subcommand;
use sluice_core::options::Options;
use sluice_core::store::{SchemaState, Store};

#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Create the schema in an empty database (SQLite: creates the file).
    Create,
    /// Apply the migrations this release has and the database lacks.
    Upgrade,
    /// Check the schema against this release; exit 0 only when it is current.
    Verify,
    /// Drop every Sluice table and all data in them.
    Drop {
        /// Confirm: the data cannot be recovered.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(options: &Options, action: &SchemaAction) -> anyhow::Result<u8> {
    let db = options.systemdb();
    let create = matches!(action, SchemaAction::Create);
    if let SchemaAction::Drop { yes: false } = action {
        bail!("dropping the schema deletes every order, definition and user in {db}; add --yes to confirm");
    }
    let store = Store::open(&db, create)
        .await
        .with_context(|| format!("cannot open the system database {db}"))?;
    let known = Store::known_schema_version();
    let code = match action {
        SchemaAction::Create => {
            let version = store.schema_create().await?;
            println!("created the Sluice schema version {version} in {db}");
            0
        }
        SchemaAction::Upgrade => {
            let applied = store.schema_upgrade().await?;
            if applied.is_empty() {
                println!("the schema in {db} is already at version {known}; nothing to do");
            } else {
                for v in &applied {
                    println!("applied migration {v}");
                }
                println!("the schema in {db} is now at version {known}");
            }
            0
        }
        SchemaAction::Verify => match store.schema_state().await? {
            SchemaState::Current { version } => {
                println!("OK: the schema in {db} is version {version}, as this Sluice expects");
                0
            }
            SchemaState::Empty => {
                println!("the database {db} has no Sluice schema: run `sluice schema create`");
                1
            }
            SchemaState::Older { version, known } => {
                println!(
                    "the schema in {db} is version {version}; this Sluice needs {known}: \
                     run `sluice schema upgrade`"
                );
                1
            }
            SchemaState::Newer { version, known } => {
                println!(
                    "the schema in {db} is version {version}, newer than this Sluice knows \
                     ({known}): use a newer Sluice"
                );
                1
            }
            SchemaState::Damaged { reason } => {
                println!("the schema in {db} is damaged: {reason}");
                1
            }
        },
        SchemaAction::Drop { .. } => {
            store.schema_drop().await?;
            println!("dropped the Sluice schema from {db}");
            0
        }
    };
    store.close().await;
    Ok(code)
}

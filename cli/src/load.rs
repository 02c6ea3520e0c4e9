//! `sluice load`: Qorus's oload. Validates interface definition files and stores them, with
//! their code, in the system database; lists and deletes what is stored. Works offline.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sluice_core::audit;
use sluice_core::interfaces;
use sluice_core::options::Options;
use sluice_core::store::DefinitionError;

/// sysexits' EX_DATAERR: the input files are wrong.
const EX_DATAERR: u8 = 65;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Definition files: *.qwf.yaml, *.qstep.yaml, *.qerrors.yaml, *.qsd.yaml (services),
    /// *.qjob.yaml (jobs).
    #[arg(value_name = "FILE", required_unless_present_any = ["list", "delete"])]
    pub files: Vec<PathBuf>,
    /// List the stored workflows, steps, errors definitions, services and jobs.
    #[arg(long, conflicts_with_all = ["files", "delete"])]
    pub list: bool,
    /// Delete a stored definition: workflow:NAME:VERSION, step:NAME:VERSION, errors:NAME,
    /// service:NAME:VERSION or job:NAME:VERSION.
    #[arg(long, value_name = "TYPE:NAME[:VERSION]", conflicts_with = "files")]
    pub delete: Option<String>,
}

pub async fn run(options: &Options, args: &LoadArgs) -> anyhow::Result<u8> {
    if args.list {
        let store = crate::open_store(options).await?;
        let stored = store.list_definitions().await?;
        store.close().await;
        println!("{:<9} {:<32} VERSION", "TYPE", "NAME");
        for d in stored {
            println!("{:<9} {:<32} {}", d.kind, d.name, d.version);
        }
        return Ok(0);
    }
    if let Some(spec) = &args.delete {
        let mut parts = spec.splitn(3, ':');
        let (Some(kind), Some(name)) = (parts.next(), parts.next()) else {
            bail!("--delete wants TYPE:NAME:VERSION (or errors:NAME), got {spec:?}");
        };
        let version = parts.next().unwrap_or_default();
        if kind != "errors" && version.is_empty() {
            bail!("--delete {kind}:{name} needs a version: {kind}:{name}:VERSION");
        }
        let store = crate::open_store(options).await?;
        let deleted = store.delete_definition(kind, name, version).await;
        store.close().await;
        if !deleted? {
            bail!(
                "no {kind} {name}{} is stored",
                if version.is_empty() {
                    String::new()
                } else {
                    format!(":{version}")
                }
            );
        }
        println!("deleted {spec}");
        return Ok(0);
    }

    // Everything is validated before anything is written.
    let loaded = match interfaces::parse_files(&args.files) {
        Ok(loaded) => loaded,
        Err(err) => {
            for d in &err.diagnostics {
                eprintln!("{d}");
            }
            // Warnings are shown with the errors (a misspelt key explains a missing one)
            // but only errors are counted.
            let problems = err
                .diagnostics
                .iter()
                .filter(|d| !d.message.starts_with(interfaces::WARNING_PREFIX))
                .count();
            eprintln!("nothing was loaded: {problems} problem(s)");
            return Ok(EX_DATAERR);
        }
    };
    for w in &loaded.warnings {
        eprintln!(
            "{}:{}: warning: {}",
            w.origin.file.display(),
            w.origin.line,
            w.message
        );
    }
    let store = crate::open_store(options).await?;
    let result = store.load_definitions(&loaded).await;
    if result.is_ok() {
        // qorus.audit: oload — one record per file loaded, as Qorus's oload writes.
        let who = std::env::var("USER").unwrap_or_else(|_| audit::SYSTEM_USER.to_string());
        let caller = audit::Caller {
            who: &who,
            source: "sluice load",
            reason: "oload",
        };
        for file in &args.files {
            audit::record(
                options,
                &store,
                audit::AuditEventCode::SourceFileLoaded,
                caller,
                Some(file.display().to_string()),
                None,
            )
            .await;
        }
    }
    store.close().await;
    match result {
        Ok(report) => {
            for line in report.lines {
                println!("{line}");
            }
            Ok(0)
        }
        Err(DefinitionError::Unresolved(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!("nothing was loaded: {} problem(s)", diagnostics.len());
            Ok(EX_DATAERR)
        }
        Err(DefinitionError::Store(err)) => Err(err).context("loading failed; nothing was loaded"),
    }
}

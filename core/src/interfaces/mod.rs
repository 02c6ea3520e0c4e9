//! Qorus's interface definition files (`*.qwf.yaml`, `*.qstep.yaml`, `*.qerrors.yaml`,
//! `*.qsd.yaml`, `*.qjob.yaml`), parsed and validated with the file and line of every
//! problem.
//!
//! The YAML is walked node by node (not deserialized) so that every error and warning
//! names the line it is about. Each file is read to the end whatever it contains, and a
//! set of files is checked as a whole, so one run reports every problem at once. What a
//! definition refers to (a workflow's steps and errors definition) is not checked here:
//! it may have been loaded earlier, so the loader checks it against the database.
//! `docs/interfaces.md` lists the supported keys.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod code;
mod errors;
mod job;
mod service;
mod step;
mod workflow;
mod yaml;

#[cfg(test)]
mod tests;

/// Starts the message of each warning among a [`LoadError`]'s diagnostics, which holds
/// errors and warnings alike (`file:line: warning: ...`, the compilers' convention).
/// Warnings in [`Loaded::warnings`] carry no prefix: they are all warnings.
pub const WARNING_PREFIX: &str = "warning: ";

/// Where a definition or value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

/// A problem (or a warning) at a place in a file: displayed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.origin.file.display(),
            self.origin.line,
            self.message
        )
    }
}

/// Every problem found; nothing may be loaded when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

/// A reference to a step, `"Name:version"` in a workflow's `steps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRef {
    pub name: String,
    pub version: String,
    pub origin: Origin,
}

/// Qorus's step grammar: a list is a series; a nested list is a set of parallel branches
/// (each branch a step or a series), all after the element before, and the element after
/// waits for every branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepNode {
    Step(StepRef),
    Parallel(Vec<Vec<StepNode>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDef {
    pub origin: Origin,
    pub name: String,
    pub version: String,
    pub desc: Option<String>,
    pub steps: Vec<StepNode>,
    pub keylist: Vec<String>,
    pub autostart: i64,
    pub max_instances: i64,
    /// The `errors` definition this workflow uses, by name.
    pub errors: Option<(String, Origin)>,
    pub groups: Vec<String>,
    /// `options` as a JSON object.
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl WorkflowDef {
    /// Every step the workflow names, in document order.
    pub fn step_refs(&self) -> Vec<&StepRef> {
        let mut out = Vec::new();
        workflow::collect_refs(&self.steps, &mut out);
        out
    }

    /// Each step with the steps it waits for (its immediate predecessors), in document order.
    ///
    /// The first step waits for nothing; the element after a set of parallel branches waits
    /// for the last step of every branch; a branch's first step waits for what the element
    /// before the set ended with.
    pub fn dependencies(&self) -> Vec<(&StepRef, Vec<&StepRef>)> {
        let mut out = Vec::new();
        workflow::collect_deps(&self.steps, Vec::new(), &mut out);
        out
    }
}

/// The code file of a step, service or job, read and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub path: PathBuf,
    pub source: String,
    /// SHA-256 of `source`, lowercase hex.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDef {
    pub origin: Origin,
    pub name: String,
    pub version: String,
    pub desc: Option<String>,
    pub lang: String,
    pub base_class_name: String,
    pub class_name: String,
    pub steptype: String,
    pub code: Code,
}

/// One method of a service, as its `methods` list declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMethodDef {
    pub name: String,
    pub desc: Option<String>,
    /// `none`, `read` or `write`.
    pub lock: String,
    pub internal: bool,
    pub write: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    pub origin: Origin,
    pub name: String,
    pub version: String,
    pub desc: Option<String>,
    /// `USER`.
    pub servicetype: String,
    pub lang: String,
    /// `QorusService`.
    pub base_class_name: String,
    pub class_name: String,
    pub code: Code,
    pub autostart: bool,
    pub groups: Vec<String>,
    /// At least one, each name once.
    pub methods: Vec<ServiceMethodDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDef {
    pub origin: Origin,
    pub name: String,
    pub version: String,
    pub desc: Option<String>,
    pub lang: String,
    /// `QorusJob`.
    pub base_class_name: String,
    pub class_name: String,
    pub code: Code,
    pub schedule: crate::schedule::Schedule,
    pub active: bool,
    pub run_skipped: bool,
    /// Ms since the epoch; the job does not run after it.
    pub expiry_date: Option<i64>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDef {
    pub origin: Origin,
    pub name: String,
    pub desc: Option<String>,
    /// FATAL, MAJOR, MINOR, WARNING, INFO or NONE.
    pub severity: String,
    /// `E` (ERROR) or `R` (RETRY).
    pub status: String,
    pub business: bool,
    pub retry_delay_secs: Option<i64>,
    /// AUTO, GLOBAL or WORKFLOW.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorsDef {
    pub origin: Origin,
    pub name: String,
    pub errors: Vec<ErrorDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Definition {
    Workflow(WorkflowDef),
    Step(StepDef),
    Errors(ErrorsDef),
    Service(ServiceDef),
    Job(JobDef),
}

impl Definition {
    /// `workflow`, `step`, `errors`, `service` or `job`: the file's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Definition::Workflow(_) => FileKind::Workflow.type_name(),
            Definition::Step(_) => FileKind::Step.type_name(),
            Definition::Errors(_) => FileKind::Errors.type_name(),
            Definition::Service(_) => FileKind::Service.type_name(),
            Definition::Job(_) => FileKind::Job.type_name(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Definition::Workflow(d) => &d.name,
            Definition::Step(d) => &d.name,
            Definition::Errors(d) => &d.name,
            Definition::Service(d) => &d.name,
            Definition::Job(d) => &d.name,
        }
    }

    /// `None` for an errors definition, which Qorus does not version.
    pub fn version(&self) -> Option<&str> {
        match self {
            Definition::Workflow(d) => Some(&d.version),
            Definition::Step(d) => Some(&d.version),
            Definition::Errors(_) => None,
            Definition::Service(d) => Some(&d.version),
            Definition::Job(d) => Some(&d.version),
        }
    }

    /// Where the definition starts: its file and the line of its first key.
    pub fn origin(&self) -> &Origin {
        match self {
            Definition::Workflow(d) => &d.origin,
            Definition::Step(d) => &d.origin,
            Definition::Errors(d) => &d.origin,
            Definition::Service(d) => &d.origin,
            Definition::Job(d) => &d.origin,
        }
    }

    /// How messages name it: `workflow 'NAME' version 'VERSION'`, `errors 'NAME'`.
    fn describe(&self) -> String {
        match self.version() {
            Some(v) => format!("{} '{}' version '{v}'", self.kind(), self.name()),
            None => format!("{} '{}'", self.kind(), self.name()),
        }
    }
}

/// The kinds of file Sluice reads, chosen by suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Workflow,
    Step,
    Errors,
    Service,
    Job,
}

impl FileKind {
    pub const ALL: [FileKind; 5] = [
        FileKind::Workflow,
        FileKind::Step,
        FileKind::Errors,
        FileKind::Service,
        FileKind::Job,
    ];

    /// The kind a file name's suffix says, if it is one Sluice supports.
    pub fn from_path(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?;
        FileKind::ALL
            .into_iter()
            .find(|k| name.ends_with(k.suffix()))
    }

    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Workflow => ".qwf.yaml",
            FileKind::Step => ".qstep.yaml",
            FileKind::Errors => ".qerrors.yaml",
            FileKind::Service => ".qsd.yaml",
            FileKind::Job => ".qjob.yaml",
        }
    }

    /// The value of the file's `type` key.
    pub fn type_name(self) -> &'static str {
        match self {
            FileKind::Workflow => "workflow",
            FileKind::Step => "step",
            FileKind::Errors => "errors",
            FileKind::Service => "service",
            FileKind::Job => "job",
        }
    }
}

/// What a set of files defines, and the warnings (unknown keys, ...) found on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Loaded {
    pub definitions: Vec<Definition>,
    pub warnings: Vec<Diagnostic>,
}

/// Reads, parses and validates every file; any problem in any file fails the whole set.
///
/// Every file is read and checked even after one fails, and duplicate definitions across
/// the set are errors, so the error lists every problem. Warnings come back in
/// [`Loaded::warnings`] on success, and otherwise among the error's diagnostics, their
/// messages starting with [`WARNING_PREFIX`].
pub fn parse_files(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut definitions = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file = parse_file(path, &text);
                definitions.extend(file.definitions);
                errors.extend(file.errors);
                warnings.extend(file.warnings);
            }
            Err(err) => errors.push(Diagnostic {
                origin: Origin {
                    file: path.clone(),
                    line: 1,
                },
                message: format!("cannot read file: {err}"),
            }),
        }
    }
    errors.extend(duplicates(&definitions));
    finish(paths, definitions, errors, warnings)
}

/// Parses one file's text (`path` names it in diagnostics and locates its code files).
pub fn parse_text(path: &Path, text: &str) -> Result<Loaded, LoadError> {
    let file = parse_file(path, text);
    finish(
        &[path.to_path_buf()],
        file.definitions,
        file.errors,
        file.warnings,
    )
}

struct ParsedFile {
    definitions: Vec<Definition>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

fn parse_file(path: &Path, text: &str) -> ParsedFile {
    let mut ctx = yaml::Ctx::new(path);
    let definition = parse_definition(&mut ctx, path, text);
    ParsedFile {
        // A definition is only whole when nothing in its file was wrong.
        definitions: definition
            .filter(|_| ctx.errors.is_empty())
            .into_iter()
            .collect(),
        errors: ctx.errors,
        warnings: ctx.warnings,
    }
}

fn parse_definition(ctx: &mut yaml::Ctx, path: &Path, text: &str) -> Option<Definition> {
    let Some(kind) = FileKind::from_path(path) else {
        ctx.error(
            1,
            "unsupported file type; expected .qwf.yaml, .qstep.yaml, .qerrors.yaml, \
             .qsd.yaml or .qjob.yaml",
        );
        return None;
    };
    let Some(root) = yaml::parse(ctx, text) else {
        if kind == FileKind::Job {
            hint_unquoted_star(ctx, text);
        }
        return None;
    };
    let marked_yaml::Node::Mapping(map) = &root else {
        ctx.error(
            yaml::line(&root),
            "the file must be a YAML mapping of keys to values",
        );
        return None;
    };
    let expected = kind.type_name();
    if map.is_empty() {
        // Its only marker is the end of the text; the first line is where a reader looks.
        ctx.error(
            1,
            format!("the file is empty; expected 'type: {expected}' and the definition's keys"),
        );
        return None;
    }
    let type_key = map.iter().find(|(k, _)| k.as_str() == "type");
    match type_key {
        None => ctx.error(
            yaml::mapping_line(map),
            format!(
                "missing required key 'type' (a {} file has 'type: {expected}')",
                kind.suffix()
            ),
        ),
        Some((key, value)) => match yaml::scalar_text(value) {
            Some(found) if found == expected => {}
            Some(found) => {
                // The rest of the file is some other kind of definition: reading it as
                // this kind would only bury this error under misleading ones.
                ctx.error(
                    yaml::scalar_line(key),
                    format!(
                        "'type: {found}' does not match the file name: a {} file has \
                         'type: {expected}'",
                        kind.suffix()
                    ),
                );
                return None;
            }
            None => yaml::Fields::wrong_type(
                ctx,
                yaml::scalar_line(key),
                "type",
                &format!("'{expected}'"),
                value,
            ),
        },
    }
    match kind {
        FileKind::Workflow => workflow::parse(ctx, map).map(Definition::Workflow),
        FileKind::Step => step::parse(ctx, map).map(Definition::Step),
        FileKind::Errors => errors::parse(ctx, map).map(Definition::Errors),
        FileKind::Service => service::parse(ctx, map).map(Definition::Service),
        FileKind::Job => job::parse(ctx, map).map(Definition::Job),
    }
}

/// `minutes: */5` unquoted is a YAML alias (`*name`), and the parser's complaint about an
/// unknown anchor does not say so: add how to write it.
fn hint_unquoted_star(ctx: &mut yaml::Ctx, text: &str) {
    let Some(last) = ctx.errors.last_mut() else {
        return;
    };
    let written = text.lines().nth(last.origin.line.saturating_sub(1));
    if written.is_some_and(|l| l.contains(": *") || l.contains(":*")) {
        last.message.push_str(
            " (an unquoted '*' starts a YAML alias: quote cron fields, e.g. minutes: \"*/5\")",
        );
    }
}

/// The same kind, name and version defined twice in one set: the second is an error.
fn duplicates(definitions: &[Definition]) -> Vec<Diagnostic> {
    let mut first: HashMap<(&str, &str, Option<&str>), &Origin> = HashMap::new();
    let mut out = Vec::new();
    for def in definitions {
        let key = (def.kind(), def.name(), def.version());
        match first.get(&key) {
            Some(origin) => out.push(Diagnostic {
                origin: def.origin().clone(),
                message: format!(
                    "duplicate definition: {} is also defined at {}:{}",
                    def.describe(),
                    origin.file.display(),
                    origin.line
                ),
            }),
            None => {
                first.insert(key, def.origin());
            }
        }
    }
    out
}

fn finish(
    paths: &[PathBuf],
    definitions: Vec<Definition>,
    errors: Vec<Diagnostic>,
    mut warnings: Vec<Diagnostic>,
) -> Result<Loaded, LoadError> {
    // Files in the order given, lines in order within a file: the order a reader fixes them.
    let file_rank = |d: &Diagnostic| {
        paths
            .iter()
            .position(|p| *p == d.origin.file)
            .unwrap_or(usize::MAX)
    };
    let sort = |v: &mut Vec<Diagnostic>| v.sort_by_key(|d| (file_rank(d), d.origin.line));
    sort(&mut warnings);
    if errors.is_empty() {
        return Ok(Loaded {
            definitions,
            warnings,
        });
    }
    // The warnings too: an unknown key is often the typo behind a "missing key" error.
    let mut diagnostics = errors;
    diagnostics.extend(warnings.into_iter().map(|w| Diagnostic {
        message: format!("{WARNING_PREFIX}{}", w.message),
        origin: w.origin,
    }));
    sort(&mut diagnostics);
    Err(LoadError { diagnostics })
}

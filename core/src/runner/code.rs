//! Interface code as the system database holds it, loaded into a runner.

use super::{module_name, ClassInfo, Runner, RunnerError};

/// What kind of interface a piece of code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Step,
    Service,
    Job,
}

impl CodeKind {
    /// How errors name it.
    pub fn noun(self) -> &'static str {
        match self {
            CodeKind::Step => "step",
            CodeKind::Service => "service",
            CodeKind::Job => "job",
        }
    }

    /// The start of the module names its code is loaded under (see [`module_name`]).
    fn module_prefix(self) -> &'static str {
        match self {
            CodeKind::Step => "step",
            CodeKind::Service => "svc",
            CodeKind::Job => "job",
        }
    }
}

/// One interface's code: its class in its source.
#[derive(Debug, Clone, Copy)]
pub struct Code<'a> {
    pub kind: CodeKind,
    pub name: &'a str,
    pub version: &'a str,
    pub class: &'a str,
    pub source: &'a str,
    pub code_hash: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// `what` is the interface, e.g. `step CHECK:1.0`.
    #[error("cannot load the code of {what} (class {class}): {source}")]
    Load {
        what: String,
        class: String,
        source: Box<RunnerError>,
    },
    #[error("class {class} of {what} has no {method}() method")]
    Missing {
        what: String,
        class: String,
        method: &'static str,
    },
}

impl Code<'_> {
    /// How errors name the interface, e.g. `step CHECK:1.0`.
    pub fn what(&self) -> String {
        format!("{} {}:{}", self.kind.noun(), self.name, self.version)
    }

    /// Loads the code into `runner` under a module of its own, and returns what its class
    /// offers.
    pub async fn load(&self, runner: &Runner) -> Result<ClassInfo, CodeError> {
        let module = module_name(
            self.kind.module_prefix(),
            self.name,
            self.version,
            self.code_hash,
        );
        runner
            .load(&module, self.class, self.source)
            .await
            .map_err(|source| CodeError::Load {
                what: self.what(),
                class: self.class.to_string(),
                source: Box::new(source),
            })
    }

    /// Refuses a class (as `load` returned it) that lacks `method`, which the engine calls.
    pub fn require(&self, class: &ClassInfo, method: &'static str) -> Result<(), CodeError> {
        if class.has(method) {
            return Ok(());
        }
        Err(CodeError::Missing {
            what: self.what(),
            class: self.class.to_string(),
            method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_without_the_method_the_engine_calls_is_refused_by_name() {
        let code = Code {
            kind: CodeKind::Job,
            name: "NIGHTLY",
            version: "1.0",
            class: "Nightly",
            source: "",
            code_hash: "abc",
        };
        let class = ClassInfo {
            methods: vec!["run".into()],
            base: "QorusJob".into(),
        };
        assert!(code.require(&class, "run").is_ok());
        let refused = code.require(&class, "primary").map(|()| String::new());
        assert_eq!(
            refused.unwrap_or_else(|e| e.to_string()),
            "class Nightly of job NIGHTLY:1.0 has no primary() method"
        );
        assert_eq!(
            Code {
                kind: CodeKind::Service,
                ..code
            }
            .what(),
            "service NIGHTLY:1.0"
        );
    }
}

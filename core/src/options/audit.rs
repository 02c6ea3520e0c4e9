//! `qorus.audit`: which kinds of state change are written to `audit_events`.

use std::collections::BTreeSet;
use std::fmt;

/// One of Qorus's audit codes, as written in `qorus.audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditCode {
    Alerts,
    Api,
    Code,
    Groups,
    Jobs,
    JobData,
    Oload,
    Services,
    System,
    UserEvents,
    WorkflowData,
    Workflows,
}

impl AuditCode {
    /// Every code, in the order Qorus documents them.
    pub const ALL: [AuditCode; 12] = [
        AuditCode::Alerts,
        AuditCode::Api,
        AuditCode::Code,
        AuditCode::Groups,
        AuditCode::Jobs,
        AuditCode::JobData,
        AuditCode::Oload,
        AuditCode::Services,
        AuditCode::System,
        AuditCode::UserEvents,
        AuditCode::WorkflowData,
        AuditCode::Workflows,
    ];

    /// The code as written in the options file.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditCode::Alerts => "alerts",
            AuditCode::Api => "api",
            AuditCode::Code => "code",
            AuditCode::Groups => "groups",
            AuditCode::Jobs => "jobs",
            AuditCode::JobData => "job-data",
            AuditCode::Oload => "oload",
            AuditCode::Services => "services",
            AuditCode::System => "system",
            AuditCode::UserEvents => "user-events",
            AuditCode::WorkflowData => "workflow-data",
            AuditCode::Workflows => "workflows",
        }
    }

    /// Reads one code, ignoring case (Qorus's own files are not consistent about it).
    pub fn from_name(name: &str) -> Option<AuditCode> {
        AuditCode::ALL
            .into_iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for AuditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `*` or a comma-separated list of codes; an empty value audits nothing.
pub(crate) fn parse_audit(value: &str) -> Result<BTreeSet<AuditCode>, String> {
    let mut codes = BTreeSet::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if item == "*" {
            codes.extend(AuditCode::ALL);
            continue;
        }
        match AuditCode::from_name(item) {
            Some(code) => {
                codes.insert(code);
            }
            None => {
                return Err(format!(
                    "unknown audit code \"{item}\": expected * or a comma-separated list of {}",
                    AuditCode::ALL.map(AuditCode::as_str).join(", ")
                ))
            }
        }
    }
    Ok(codes)
}

/// The inverse of [`parse_audit`]: `*` when every code is on.
pub(crate) fn render_audit(codes: &BTreeSet<AuditCode>) -> String {
    if codes.len() == AuditCode::ALL.len() {
        return "*".to_owned();
    }
    codes
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_means_every_code_and_round_trips() {
        let all = parse_audit("*").unwrap();
        assert_eq!(all.len(), AuditCode::ALL.len());
        assert_eq!(render_audit(&all), "*");
    }

    #[test]
    fn list_is_trimmed_and_case_insensitive() {
        let codes = parse_audit(" Jobs , job-data,,user-events ").unwrap();
        assert_eq!(
            codes.into_iter().collect::<Vec<_>>(),
            vec![AuditCode::Jobs, AuditCode::JobData, AuditCode::UserEvents]
        );
        assert!(parse_audit("").unwrap().is_empty());
    }

    #[test]
    fn unknown_code_lists_the_valid_ones() {
        let err = parse_audit("jobs,workflow").unwrap_err();
        assert!(err.contains("unknown audit code \"workflow\""), "{err}");
        assert!(err.contains("alerts, api, code"), "{err}");
        assert!(err.contains("workflow-data, workflows"), "{err}");
    }
}

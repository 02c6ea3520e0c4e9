//! `NAME.qerrors.yaml`: a named set of error definitions that workflows refer to.

use std::collections::HashMap;

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;

use super::yaml::{self, Ctx, Fields};
use super::{ErrorDef, ErrorsDef};

const KEYS: &[&str] = &["type", "name", "desc", "author", "errors"];
const ERROR_KEYS: &[&str] = &[
    "name",
    "desc",
    "severity",
    "status",
    "business",
    "retry-delay",
    "level",
];

const SEVERITIES: &[&str] = &["FATAL", "MAJOR", "MINOR", "WARNING", "INFO", "NONE"];
const STATUSES: &[&str] = &["ERROR", "RETRY"];
const LEVELS: &[&str] = &["AUTO", "GLOBAL", "WORKFLOW"];

pub(super) fn parse(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<ErrorsDef> {
    let fields = Fields::new(ctx, map, "errors definition", KEYS);
    let name = fields.req_ident(ctx, "name");
    // `desc` is accepted for Qorus compatibility; ErrorsDef has nowhere to keep it.
    let _ = fields.opt_string(ctx, "desc");
    let errors = match fields.require(ctx, "errors") {
        Some((_, Node::Sequence(seq))) => {
            let mut out = Vec::new();
            let mut ok = true;
            let mut seen: HashMap<String, usize> = HashMap::new();
            for item in seq.iter() {
                let Node::Mapping(entry) = item else {
                    Fields::wrong_type(
                        ctx,
                        yaml::line(item),
                        "errors",
                        "a mapping with 'name', 'severity', ...",
                        item,
                    );
                    ok = false;
                    continue;
                };
                match error(ctx, entry) {
                    Some(def) => {
                        if let Some(first) = seen.get(&def.name) {
                            ctx.error(
                                def.origin.line,
                                format!(
                                    "error '{}' is defined more than once (first at line {first})",
                                    def.name
                                ),
                            );
                            ok = false;
                        } else {
                            seen.insert(def.name.clone(), def.origin.line);
                            out.push(def);
                        }
                    }
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        Some((line, other)) => {
            Fields::wrong_type(ctx, line, "errors", "a list of error definitions", other);
            None
        }
        None => None,
    };
    Some(ErrorsDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        errors: errors?,
    })
}

fn error(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<ErrorDef> {
    let fields = Fields::new(ctx, map, "error definition", ERROR_KEYS);
    let name = fields.req_string(ctx, "name").map(|(n, _)| n);
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let severity = choice(ctx, &fields, "severity", SEVERITIES, "MAJOR");
    let status = choice(ctx, &fields, "status", STATUSES, "ERROR").map(|s| {
        // Stored as Qorus stores it: the first letter.
        if s == "RETRY" { "R" } else { "E" }.to_string()
    });
    let business = match fields.get("business") {
        Some(_) => fields.opt_bool(ctx, "business"),
        None => Some(false),
    };
    let retry_delay_secs = match fields.get("retry-delay") {
        Some(_) => fields.opt_int(ctx, "retry-delay", 0).map(Some),
        None => Some(None),
    };
    let level = choice(ctx, &fields, "level", LEVELS, "AUTO");
    Some(ErrorDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        desc,
        severity: severity?,
        status: status?,
        business: business?,
        retry_delay_secs: retry_delay_secs?,
        level: level?,
    })
}

/// The value upper-cased, the default when absent, `None` (reported) when invalid.
fn choice(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    key: &str,
    allowed: &[&str],
    default: &str,
) -> Option<String> {
    match fields.get(key) {
        None => Some(default.to_string()),
        Some(_) => fields.opt_choice(ctx, key, allowed).map(|(v, _)| v),
    }
}

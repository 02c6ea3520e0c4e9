//! `NAME-VERSION.qstep.yaml`: a step and its code file.

use marked_yaml::types::MarkedMappingNode;
use sha2::{Digest, Sha256};

use super::yaml::{Ctx, Fields};
use super::{Code, StepDef};

const KEYS: &[&str] = &[
    "type",
    "name",
    "version",
    "desc",
    "author",
    "lang",
    "base-class-name",
    "class-name",
    "code",
    "steptype",
];

const SUPPORTED_LANG: &str = "python";
const SUPPORTED_BASE_CLASS: &str = "QorusNormalStep";
const SUPPORTED_STEPTYPE: &str = "NORMAL";
/// Qorus step types that Sluice knows of but does not run yet.
const LATER_STEPTYPES: &[&str] = &["ASYNC", "EVENT", "SUBWORKFLOW"];

pub(super) fn parse(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<StepDef> {
    let fields = Fields::new(ctx, map, "step", KEYS);
    let name = fields.req_ident(ctx, "name");
    let version = fields.req_ident(ctx, "version");
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let lang = fields.req_string(ctx, "lang").and_then(|(lang, line)| {
        if lang == SUPPORTED_LANG {
            Some(lang)
        } else {
            ctx.error(
                line,
                format!("lang '{lang}' is not supported; Sluice supports only '{SUPPORTED_LANG}'"),
            );
            None
        }
    });
    let base_class_name = fields
        .req_string(ctx, "base-class-name")
        .and_then(|(base, line)| {
            if base == SUPPORTED_BASE_CLASS {
                Some(base)
            } else {
                ctx.error(
                    line,
                    format!(
                        "base-class-name '{base}' is not supported yet; \
                         Sluice supports only {SUPPORTED_BASE_CLASS} now"
                    ),
                );
                None
            }
        });
    let class_name = fields.req_string(ctx, "class-name").map(|(c, _)| c);
    let steptype = steptype(ctx, &fields);
    let code = fields
        .req_string(ctx, "code")
        .and_then(|(file, line)| read_code(ctx, &file, line));
    Some(StepDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        version: version?,
        desc,
        lang: lang?,
        base_class_name: base_class_name?,
        class_name: class_name?,
        steptype: steptype?,
        code: code?,
    })
}

fn steptype(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<String> {
    let Some((text, line)) = fields.opt_string(ctx, "steptype") else {
        // Absent is NORMAL; present but malformed has been reported already.
        return fields
            .get("steptype")
            .is_none()
            .then(|| SUPPORTED_STEPTYPE.to_string());
    };
    let upper = text.to_ascii_uppercase();
    if upper == SUPPORTED_STEPTYPE {
        Some(upper)
    } else if LATER_STEPTYPES.contains(&upper.as_str()) {
        ctx.error(
            line,
            format!(
                "steptype {upper} is not supported yet (asynchronous, event and subworkflow \
                 steps arrive in a later version of Sluice); only {SUPPORTED_STEPTYPE} is \
                 supported now"
            ),
        );
        None
    } else {
        ctx.error(
            line,
            format!(
                "unknown steptype '{text}'; expected {SUPPORTED_STEPTYPE} \
                 (ASYNC, EVENT and SUBWORKFLOW arrive later)"
            ),
        );
        None
    }
}

/// Reads the code file named relative to the YAML file's directory, as Qorus's oload does.
fn read_code(ctx: &mut Ctx, file: &str, line: usize) -> Option<Code> {
    let dir = ctx.file().parent().unwrap_or(std::path::Path::new(""));
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(source) => {
            let hash = hex(&Sha256::digest(source.as_bytes()));
            Some(Code { path, source, hash })
        }
        Err(err) => {
            ctx.error(
                line,
                format!(
                    "key 'code': cannot read code file '{file}' ({}): {err}",
                    path.display()
                ),
            );
            None
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

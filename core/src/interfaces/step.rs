//! `NAME-VERSION.qstep.yaml`: a step and its code file.

use marked_yaml::types::MarkedMappingNode;

use super::code;
use super::yaml::{Ctx, Fields};
use super::StepDef;

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

const SUPPORTED_BASE_CLASS: &str = "QorusNormalStep";
const SUPPORTED_STEPTYPE: &str = "NORMAL";
/// Qorus step types that Sluice knows of but does not run yet.
const LATER_STEPTYPES: &[&str] = &["ASYNC", "EVENT", "SUBWORKFLOW"];

pub(super) fn parse(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<StepDef> {
    let fields = Fields::new(ctx, map, "step", KEYS);
    let name = fields.req_ident(ctx, "name");
    let version = fields.req_ident(ctx, "version");
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let lang = code::lang(ctx, &fields);
    let base_class_name = code::base_class(ctx, &fields, SUPPORTED_BASE_CLASS);
    let class_name = fields.req_string(ctx, "class-name").map(|(c, _)| c);
    let steptype = steptype(ctx, &fields);
    let code = code::code(ctx, &fields);
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

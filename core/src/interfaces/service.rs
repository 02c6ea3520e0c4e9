//! `NAME-VERSION.qsd.yaml`: a service, its methods and its code file.

use std::collections::HashMap;

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;

use super::code;
use super::yaml::{self, Ctx, Fields};
use super::{ServiceDef, ServiceMethodDef};

const KEYS: &[&str] = &[
    "type",
    "name",
    "version",
    "desc",
    "author",
    "servicetype",
    "lang",
    "base-class-name",
    "class-name",
    "code",
    "autostart",
    "groups",
    "methods",
    // Every Python service is class-based; the key says nothing Sluice needs to know.
    "class-based",
];
const METHOD_KEYS: &[&str] = &["name", "desc", "author", "lock", "internal", "write"];

const SUPPORTED_BASE_CLASS: &str = "QorusService";
const LOCKS: &[&str] = &["none", "read", "write"];

pub(super) fn parse(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<ServiceDef> {
    let fields = Fields::new(ctx, map, "service", KEYS);
    let name = fields.req_ident(ctx, "name");
    let version = fields.req_ident(ctx, "version");
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let servicetype = servicetype(ctx, &fields);
    let lang = code::lang(ctx, &fields);
    let base_class_name = code::base_class(ctx, &fields, SUPPORTED_BASE_CLASS);
    let class_name = fields.req_string(ctx, "class-name").map(|(c, _)| c);
    let code = code::code(ctx, &fields);
    let autostart = match fields.get("autostart") {
        Some(_) => fields.opt_bool(ctx, "autostart"),
        None => Some(false),
    };
    let groups = fields.string_list(ctx, "groups");
    let methods = methods(ctx, &fields);
    Some(ServiceDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        version: version?,
        desc,
        servicetype: servicetype?,
        lang: lang?,
        base_class_name: base_class_name?,
        class_name: class_name?,
        code: code?,
        autostart: autostart?,
        groups: groups?,
        methods: methods?,
    })
}

/// `USER` (the default). Qorus's SYSTEM services are its own, built in; Sluice's are too.
fn servicetype(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<String> {
    let Some((text, line)) = fields.opt_string(ctx, "servicetype") else {
        return fields
            .get("servicetype")
            .is_none()
            .then(|| "USER".to_string());
    };
    match text.to_ascii_uppercase().as_str() {
        "USER" => Some("USER".to_string()),
        "SYSTEM" => {
            ctx.error(
                line,
                "servicetype SYSTEM is not supported: system services are built into Sluice; \
                 an interface file defines a USER service",
            );
            None
        }
        _ => {
            ctx.error(
                line,
                format!("key 'servicetype': '{text}' is not one of USER (the default)"),
            );
            None
        }
    }
}

fn methods(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<Vec<ServiceMethodDef>> {
    let (line, node) = fields.require(ctx, "methods")?;
    let Node::Sequence(seq) = node else {
        Fields::wrong_type(ctx, line, "methods", "a list of methods", node);
        return None;
    };
    if seq.is_empty() {
        ctx.error(line, "key 'methods': a service needs at least one method");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in seq.iter() {
        let Node::Mapping(entry) = item else {
            Fields::wrong_type(
                ctx,
                yaml::line(item),
                "methods",
                "a mapping with 'name', 'desc', ...",
                item,
            );
            ok = false;
            continue;
        };
        match method(ctx, entry) {
            Some(m) => match seen.get(&m.name) {
                Some(first) => {
                    ctx.error(
                        m.origin.line,
                        format!(
                            "method '{}' is defined more than once (first at line {first})",
                            m.name
                        ),
                    );
                    ok = false;
                }
                None => {
                    seen.insert(m.name.clone(), m.origin.line);
                    out.push(m);
                }
            },
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn method(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<ServiceMethodDef> {
    let fields = Fields::new(ctx, map, "method", METHOD_KEYS);
    // Called as an attribute of the service's object, so it must be a Python identifier.
    let name = fields.req_string(ctx, "name").and_then(|(name, line)| {
        if is_identifier(&name) {
            Some(name)
        } else {
            ctx.error(
                line,
                format!(
                    "key 'name': method '{name}' is not a valid Python method name \
                     (letters, digits and '_', not starting with a digit)"
                ),
            );
            None
        }
    });
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let lock = match fields.get("lock") {
        None => Some("none".to_string()),
        Some(_) => fields.opt_string(ctx, "lock").and_then(|(text, line)| {
            let lower = text.to_ascii_lowercase();
            if LOCKS.contains(&lower.as_str()) {
                Some(lower)
            } else {
                ctx.error(
                    line,
                    format!("key 'lock': '{text}' is not one of {}", LOCKS.join(", ")),
                );
                None
            }
        }),
    };
    let flag = |ctx: &mut Ctx, key: &str| match fields.get(key) {
        Some(_) => fields.opt_bool(ctx, key),
        None => Some(false),
    };
    let internal = flag(ctx, "internal");
    let write = flag(ctx, "write");
    Some(ServiceMethodDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        desc,
        lock: lock?,
        internal: internal?,
        write: write?,
    })
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

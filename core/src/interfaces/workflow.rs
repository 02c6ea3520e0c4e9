//! `NAME-VERSION.qwf.yaml`: a workflow and its steps in Qorus's grammar.

use std::collections::HashMap;

use marked_yaml::types::{MarkedMappingNode, MarkedSequenceNode};
use marked_yaml::Node;

use super::yaml::{self, Ctx, Fields};
use super::{StepNode, StepRef, WorkflowDef};

const KEYS: &[&str] = &[
    "type",
    "name",
    "version",
    "desc",
    "author",
    "steps",
    "keylist",
    "autostart",
    "max_instances",
    "errors",
    "groups",
    "options",
];

pub(super) fn parse(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<WorkflowDef> {
    let fields = Fields::new(ctx, map, "workflow", KEYS);
    let name = fields.req_ident(ctx, "name");
    let version = fields.req_ident(ctx, "version");
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let steps = parse_steps(ctx, &fields);
    let keylist = fields.string_list(ctx, "keylist");
    let autostart = parse_autostart(ctx, &fields);
    let max_instances = match fields.get("max_instances") {
        Some(_) => fields.opt_int(ctx, "max_instances", 1),
        None => Some(1),
    };
    let errors = match fields.get("errors") {
        Some(_) => fields
            .opt_string(ctx, "errors")
            .map(|(name, line)| Some((name, ctx.origin(line)))),
        None => Some(None),
    };
    let groups = fields.string_list(ctx, "groups");
    let options = match fields.opt_mapping(ctx, "options") {
        Some(Some(map)) => Some(yaml::mapping_to_json(map)),
        Some(None) => Some(serde_json::Map::new()),
        None => None,
    };
    Some(WorkflowDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        version: version?,
        desc,
        steps: steps?,
        keylist: keylist?,
        autostart: autostart?,
        max_instances: max_instances?,
        errors: errors?,
        groups: groups?,
        options: options?,
    })
}

/// Qorus takes an integer, and also `true`/`false` for one instance or none.
fn parse_autostart(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<i64> {
    match fields.get("autostart") {
        None => Some(0),
        Some((_, node)) => match yaml::scalar_bool(node) {
            Some(b) => Some(i64::from(b)),
            None => fields.opt_int(ctx, "autostart", 0),
        },
    }
}

fn parse_steps(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<Vec<StepNode>> {
    let (line, node) = fields.require(ctx, "steps")?;
    let Node::Sequence(seq) = node else {
        Fields::wrong_type(ctx, line, "steps", "a list of steps", node);
        return None;
    };
    if seq.is_empty() {
        ctx.error(line, "key 'steps': a workflow needs at least one step");
        return None;
    }
    let mut seen = HashMap::new();
    series(ctx, seq, &mut seen)
}

/// A list read as a series: strings are steps, nested lists are parallel branches.
fn series(
    ctx: &mut Ctx,
    seq: &MarkedSequenceNode,
    seen: &mut HashMap<String, usize>,
) -> Option<Vec<StepNode>> {
    let mut out = Vec::new();
    let mut ok = true;
    for item in seq.iter() {
        let node = match item {
            Node::Sequence(inner) => parallel(ctx, inner, seen),
            other => step(ctx, other, seen).map(StepNode::Step),
        };
        match node {
            Some(n) => out.push(n),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A nested list: each element a branch, either one step or a series of its own.
fn parallel(
    ctx: &mut Ctx,
    seq: &MarkedSequenceNode,
    seen: &mut HashMap<String, usize>,
) -> Option<StepNode> {
    let line = yaml::span_line(seq.span());
    if seq.is_empty() {
        ctx.error(
            line,
            "key 'steps': an empty list; a list of parallel branches needs at least one",
        );
        return None;
    }
    let mut branches = Vec::new();
    let mut ok = true;
    for item in seq.iter() {
        let branch = match item {
            Node::Sequence(inner) if inner.is_empty() => {
                ctx.error(
                    yaml::line(item),
                    "key 'steps': an empty list; a branch needs at least one step",
                );
                None
            }
            Node::Sequence(inner) => series(ctx, inner, seen),
            other => step(ctx, other, seen).map(|s| vec![StepNode::Step(s)]),
        };
        match branch {
            Some(b) => branches.push(b),
            None => ok = false,
        }
    }
    ok.then_some(StepNode::Parallel(branches))
}

fn step(ctx: &mut Ctx, node: &Node, seen: &mut HashMap<String, usize>) -> Option<StepRef> {
    let line = yaml::line(node);
    if let Node::Mapping(map) = node {
        if let [(key, value)] = map.iter().collect::<Vec<_>>().as_slice() {
            if let Some(value) = yaml::scalar_text(value) {
                ctx.error(
                    line,
                    format!(
                        "step '{key}: {value}' is read by YAML as a mapping; \
                         write it '{key}:{value}', without a space",
                        key = key.as_str()
                    ),
                );
                return None;
            }
        }
    }
    let Some(text) = yaml::scalar_text(node) else {
        Fields::wrong_type(ctx, line, "steps", "'StepName:version' or a list", node);
        return None;
    };
    let Some((name, version)) = text.split_once(':') else {
        ctx.error(
            line,
            format!("step '{text}': expected 'StepName:version' (no ':' found)"),
        );
        return None;
    };
    for (part, value) in [("name", name), ("version", version)] {
        if let Some(problem) = yaml::ident_problem(value) {
            ctx.error(
                line,
                format!("step '{text}': expected 'StepName:version'; the {part} {problem}"),
            );
            return None;
        }
    }
    // By name, not name and version: the engine and operators address a workflow's steps
    // by name (skipStep, step status), so two versions of one step would be ambiguous.
    if let Some(first) = seen.get(name) {
        ctx.error(
            line,
            format!("step '{name}' appears more than once in the workflow (first at line {first})"),
        );
        return None;
    }
    seen.insert(name.to_string(), line);
    Some(StepRef {
        name: name.to_string(),
        version: version.to_string(),
        origin: ctx.origin(line),
    })
}

/// Appends every step under `nodes`, in document order.
pub(super) fn collect_refs<'a>(nodes: &'a [StepNode], out: &mut Vec<&'a StepRef>) {
    for node in nodes {
        match node {
            StepNode::Step(s) => out.push(s),
            StepNode::Parallel(branches) => {
                for branch in branches {
                    collect_refs(branch, out);
                }
            }
        }
    }
}

/// Appends each step of the series `nodes` with its predecessors, the first element
/// waiting for `preds`; returns the steps the series ends with (what follows waits for).
pub(super) fn collect_deps<'a>(
    nodes: &'a [StepNode],
    preds: Vec<&'a StepRef>,
    out: &mut Vec<(&'a StepRef, Vec<&'a StepRef>)>,
) -> Vec<&'a StepRef> {
    let mut tails = preds;
    for node in nodes {
        tails = match node {
            StepNode::Step(s) => {
                out.push((s, tails));
                vec![s]
            }
            StepNode::Parallel(branches) => branches
                .iter()
                .flat_map(|branch| collect_deps(branch, tails.clone(), out))
                .collect(),
        };
    }
    tails
}

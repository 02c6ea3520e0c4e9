//! Reading marked YAML nodes with a diagnostic, at the right line, for every problem.
//!
//! Every reader records what is wrong in the file's [`Ctx`] and returns `None`, so one
//! pass over a file reports all of its problems rather than stopping at the first.

use std::path::{Path, PathBuf};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node, Span};

use super::{Diagnostic, Origin};

/// The diagnostics of one file.
pub(super) struct Ctx {
    file: PathBuf,
    pub(super) errors: Vec<Diagnostic>,
    pub(super) warnings: Vec<Diagnostic>,
}

impl Ctx {
    pub(super) fn new(file: &Path) -> Self {
        Ctx {
            file: file.to_path_buf(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn file(&self) -> &Path {
        &self.file
    }

    pub(super) fn origin(&self, line: usize) -> Origin {
        Origin {
            file: self.file.clone(),
            line: line.max(1),
        }
    }

    pub(super) fn error(&mut self, line: usize, message: impl Into<String>) {
        let origin = self.origin(line);
        self.errors.push(Diagnostic {
            origin,
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, line: usize, message: impl AsRef<str>) {
        let origin = self.origin(line);
        self.warnings.push(Diagnostic {
            origin,
            message: message.as_ref().to_string(),
        });
    }
}

/// Parses a whole file into its top-level mapping, or records the syntax error.
pub(super) fn parse(ctx: &mut Ctx, text: &str) -> Option<Node> {
    // Duplicate keys are an error rather than "the last one wins": a repeated `steps:`
    // would otherwise silently drop half a workflow. Coercion is limited to plain scalars
    // so a quoted "1" stays a string and `true` in quotes is not a boolean.
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => {
            if let Some(line) = second_document(text) {
                ctx.error(
                    line,
                    "a second YAML document ('---') is not supported: one definition per file",
                );
            }
            Some(node)
        }
        Err(err) => {
            use marked_yaml::LoadError as E;
            let (line, message) = match &err {
                E::TopLevelMustBeMapping(m) => (
                    m.line(),
                    "the file must be a YAML mapping of keys to values".to_string(),
                ),
                E::TopLevelMustBeSequence(m) => (m.line(), "unexpected top-level list".into()),
                E::UnexpectedAnchor(m) => (
                    m.line(),
                    "YAML anchors and aliases (&name, *name) are not supported".into(),
                ),
                E::MappingKeyMustBeScalar(m) => {
                    (m.line(), "mapping keys must be plain strings".into())
                }
                E::UnexpectedTag(m) => (m.line(), "YAML tags (!tag) are not supported".into()),
                E::ScanError(m, scan) => (m.line(), format!("YAML syntax error: {}", scan.info())),
                E::DuplicateKey(dup) => (
                    scalar_line(&dup.key),
                    format!(
                        "duplicate key '{}' (first at line {})",
                        dup.key.as_str(),
                        scalar_line(&dup.prev_key)
                    ),
                ),
            };
            ctx.error(line, message);
            None
        }
    }
}

/// The line of a `---` that starts a second document: the parser reads only the first,
/// and the rest must not be dropped without a word. A `---` at column 0 after content is a
/// document marker (inside a block scalar it would be indented).
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (index, line) in text.lines().enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if marker && content {
            return Some(index + 1);
        }
        let trimmed = line.trim_start();
        if !marker && !trimmed.is_empty() && !trimmed.starts_with('#') {
            content = true;
        }
    }
    None
}

pub(super) fn span_line(span: &Span) -> usize {
    span.start().map(|m| m.line()).unwrap_or(1).max(1)
}

pub(super) fn line(node: &Node) -> usize {
    span_line(node.span())
}

pub(super) fn scalar_line(s: &MarkedScalarNode) -> usize {
    span_line(s.span())
}

pub(super) fn mapping_line(m: &MarkedMappingNode) -> usize {
    span_line(m.span())
}

/// YAML's null: only an unquoted `~`, `null` or nothing at all.
pub(super) fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// What a node is, for "expected X, found Y" messages.
pub(super) fn describe(node: &Node) -> String {
    match node {
        Node::Scalar(s) if is_null(s) => "an empty value".into(),
        Node::Scalar(s) => format!("'{}'", s.as_str()),
        Node::Sequence(_) => "a list".into(),
        Node::Mapping(_) => "a mapping".into(),
    }
}

/// A non-null scalar as text, exactly as written (so `version: 1.0` is "1.0").
pub(super) fn scalar_text(node: &Node) -> Option<&str> {
    match node {
        Node::Scalar(s) if !is_null(s) => Some(s.as_str()),
        _ => None,
    }
}

/// An integer written without quotes.
pub(super) fn scalar_int(node: &Node) -> Option<i64> {
    match node {
        Node::Scalar(s) if s.may_coerce() => s.as_str().parse().ok(),
        _ => None,
    }
}

/// `true` or `false` written without quotes.
pub(super) fn scalar_bool(node: &Node) -> Option<bool> {
    match node {
        Node::Scalar(s) if s.may_coerce() => match s.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A YAML value as JSON: plain scalars become null, booleans or numbers where they read as
/// such, everything else (and anything quoted) a string.
pub(super) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Scalar(s) if is_null(s) => Value::Null,
        Node::Scalar(s) => {
            if let Some(b) = scalar_bool(node) {
                Value::Bool(b)
            } else if let Some(i) = scalar_int(node) {
                Value::from(i)
            } else if let Some(n) = s
                .may_coerce()
                .then(|| s.as_str().parse::<f64>().ok())
                .flatten()
                .and_then(serde_json::Number::from_f64)
            {
                Value::Number(n)
            } else {
                Value::String(s.as_str().to_string())
            }
        }
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(mapping_to_json(map)),
    }
}

pub(super) fn mapping_to_json(
    map: &MarkedMappingNode,
) -> serde_json::Map<String, serde_json::Value> {
    map.iter()
        .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
        .collect()
}

/// A mapping being read as one kind of definition: knows its keys and where it is.
pub(super) struct Fields<'a> {
    map: &'a MarkedMappingNode,
    /// What the mapping is, for messages: "workflow", "error definition", ...
    what: &'static str,
}

impl<'a> Fields<'a> {
    /// Warns about every key not in `known` (Qorus has many keys Sluice does not support
    /// yet; each is reported rather than silently ignored or misread).
    pub(super) fn new(
        ctx: &mut Ctx,
        map: &'a MarkedMappingNode,
        what: &'static str,
        known: &[&str],
    ) -> Self {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                ctx.warn(
                    scalar_line(key),
                    format!(
                        "unknown key '{}' ignored (not supported by Sluice yet)",
                        key.as_str()
                    ),
                );
            }
        }
        Fields { map, what }
    }

    pub(super) fn line(&self) -> usize {
        mapping_line(self.map)
    }

    /// The key (for its line) and value, if present and not an empty value: `key:` with
    /// nothing after it means the same as leaving the key out.
    pub(super) fn get(&self, key: &str) -> Option<(usize, &'a Node)> {
        self.map
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .filter(|(_, v)| !matches!(v, Node::Scalar(s) if is_null(s)))
            .map(|(k, v)| (scalar_line(k), v))
    }

    /// A required key absent (reported at the mapping) or written with no value (at the key).
    fn missing(&self, ctx: &mut Ctx, key: &str) {
        match self.map.iter().find(|(k, _)| k.as_str() == key) {
            Some((k, _)) => ctx.error(
                scalar_line(k),
                format!("key '{key}' is required but has no value"),
            ),
            None => ctx.error(
                self.line(),
                format!("{} is missing required key '{key}'", self.what),
            ),
        }
    }

    pub(super) fn wrong_type(ctx: &mut Ctx, line: usize, key: &str, expected: &str, node: &Node) {
        ctx.error(
            line,
            format!("key '{key}': expected {expected}, found {}", describe(node)),
        );
    }

    /// Present and required: records "missing" otherwise.
    pub(super) fn require(&self, ctx: &mut Ctx, key: &str) -> Option<(usize, &'a Node)> {
        let found = self.get(key);
        if found.is_none() {
            self.missing(ctx, key);
        }
        found
    }

    pub(super) fn opt_string(&self, ctx: &mut Ctx, key: &str) -> Option<(String, usize)> {
        let (line, node) = self.get(key)?;
        match scalar_text(node) {
            Some(text) => Some((text.to_string(), line)),
            None => {
                Self::wrong_type(ctx, line, key, "a string", node);
                None
            }
        }
    }

    pub(super) fn req_string(&self, ctx: &mut Ctx, key: &str) -> Option<(String, usize)> {
        if self.get(key).is_none() {
            self.missing(ctx, key);
            return None;
        }
        self.opt_string(ctx, key)
    }

    /// A name or version: also used in `TYPE:NAME:VERSION` and `"Step:version"`, so it may
    /// hold neither `:` nor whitespace.
    pub(super) fn req_ident(&self, ctx: &mut Ctx, key: &str) -> Option<String> {
        let (text, line) = self.req_string(ctx, key)?;
        match ident_problem(&text) {
            Some(problem) => {
                ctx.error(line, format!("key '{key}': '{text}' {problem}"));
                None
            }
            None => Some(text),
        }
    }

    pub(super) fn opt_int(&self, ctx: &mut Ctx, key: &str, min: i64) -> Option<i64> {
        let (line, node) = self.get(key)?;
        match scalar_int(node) {
            Some(n) if n >= min => Some(n),
            Some(n) => {
                ctx.error(
                    line,
                    format!("key '{key}': {n} is too small (the minimum is {min})"),
                );
                None
            }
            None => {
                Self::wrong_type(ctx, line, key, "an integer", node);
                None
            }
        }
    }

    pub(super) fn opt_bool(&self, ctx: &mut Ctx, key: &str) -> Option<bool> {
        let (line, node) = self.get(key)?;
        let value = scalar_bool(node);
        if value.is_none() {
            Self::wrong_type(ctx, line, key, "true or false", node);
        }
        value
    }

    /// One of `allowed`, matched case-insensitively and returned upper-case.
    pub(super) fn opt_choice(
        &self,
        ctx: &mut Ctx,
        key: &str,
        allowed: &[&str],
    ) -> Option<(String, usize)> {
        let (text, line) = self.opt_string(ctx, key)?;
        let upper = text.to_ascii_uppercase();
        if allowed.contains(&upper.as_str()) {
            Some((upper, line))
        } else {
            ctx.error(
                line,
                format!("key '{key}': '{text}' is not one of {}", allowed.join(", ")),
            );
            None
        }
    }

    /// A list of strings, each distinct. `Some(empty)` when the key is absent.
    pub(super) fn string_list(&self, ctx: &mut Ctx, key: &str) -> Option<Vec<String>> {
        let Some((line, node)) = self.get(key) else {
            return Some(Vec::new());
        };
        let Node::Sequence(seq) = node else {
            Self::wrong_type(ctx, line, key, "a list of strings", node);
            return None;
        };
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for item in seq.iter() {
            match scalar_text(item) {
                Some(text) if out.iter().any(|s| s == text) => {
                    ctx.error(
                        self::line(item),
                        format!("key '{key}': '{text}' is listed more than once"),
                    );
                    ok = false;
                }
                Some(text) => out.push(text.to_string()),
                None => {
                    Self::wrong_type(ctx, self::line(item), key, "a string", item);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn opt_mapping(
        &self,
        ctx: &mut Ctx,
        key: &str,
    ) -> Option<Option<&'a MarkedMappingNode>> {
        let Some((line, node)) = self.get(key) else {
            return Some(None);
        };
        match node {
            Node::Mapping(map) => Some(Some(map)),
            other => {
                Self::wrong_type(ctx, line, key, "a mapping", other);
                None
            }
        }
    }
}

/// Why `text` cannot be a name or version, if it cannot.
pub(super) fn ident_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("is empty")
    } else if text.contains(':') {
        Some("may not contain ':'")
    } else if text.chars().any(char::is_whitespace) {
        Some("may not contain whitespace")
    } else {
        None
    }
}

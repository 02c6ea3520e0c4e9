//! Bodies in and out: JSON by default, YAML (`application/x-yaml`, `text/x-yaml`) when the
//! request asks for it, and the form encoding for arguments.
//!
//! YAML is read with yaml-rust2's event parser straight into a `serde_json::Value`, with
//! the same nesting limit as serde_json's (128) and no aliases (an alias can multiply a
//! small document into a huge one), so no input can exhaust the stack or the memory.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::{Yaml, YamlEmitter};

use crate::errors::ApiError;

/// Deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 128;

const YAML_TYPES: &[&str] = &["application/x-yaml", "text/x-yaml"];

/// The representation of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `application/x-www-form-urlencoded` (request bodies only).
    Form,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/x-yaml",
            Format::Form => "application/x-www-form-urlencoded",
        }
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn mentions_yaml(value: &str) -> bool {
    let value = value.to_ascii_lowercase();
    YAML_TYPES.iter().any(|t| value.contains(t))
}

/// What the request body is, from its `Content-Type` (JSON when it names nothing we know).
pub fn request_format(headers: &HeaderMap) -> Format {
    let content_type = header_text(headers, header::CONTENT_TYPE);
    if mentions_yaml(content_type) {
        Format::Yaml
    } else if content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        Format::Form
    } else {
        Format::Json
    }
}

/// What the reply should be: YAML when `Accept` asks for it, or when it asks for neither
/// YAML nor JSON and the request was YAML.
pub fn reply_format(headers: &HeaderMap) -> Format {
    let accept = header_text(headers, header::ACCEPT);
    if mentions_yaml(accept) {
        return Format::Yaml;
    }
    if accept.to_ascii_lowercase().contains("json") {
        return Format::Json;
    }
    match request_format(headers) {
        Format::Yaml => Format::Yaml,
        _ => Format::Json,
    }
}

/// A reply with `value` in `format`.
pub fn respond(format: Format, status: StatusCode, value: &Value) -> Response<Body> {
    let (body, content_type) = match format {
        Format::Yaml => match to_yaml(value) {
            Ok(text) => (text, Format::Yaml.content_type()),
            Err(err) => {
                tracing::error!("cannot write a reply as YAML: {err}");
                (value.to_string(), Format::Json.content_type())
            }
        },
        _ => (value.to_string(), Format::Json.content_type()),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error reply in `format`.
pub fn respond_error(format: Format, error: &ApiError) -> Response<Body> {
    let mut response = respond(format, error.status(), &error.to_json());
    if error.code == "AUTHENTICATION-ERROR" {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Sluice\""),
        );
    }
    response
}

/// Parses a request body in `format`; an empty body is `None`.
pub fn parse_body(format: Format, bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let malformed = |what: &str, err: String| {
        ApiError::new(
            "BAD-REQUEST",
            format!("the request body is not valid {what}: {err}"),
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|e| malformed("UTF-8 text", e.to_string()))?;
    match format {
        Format::Json => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| malformed("JSON", e.to_string())),
        Format::Yaml => from_yaml(text).map(Some).map_err(|e| malformed("YAML", e)),
        Format::Form => {
            let mut object = Map::new();
            for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
                object.insert(name.into_owned(), Value::String(value.into_owned()));
            }
            Ok(Some(Value::Object(object)))
        }
    }
}

/// One YAML document as JSON. Aliases, non-scalar keys and more than one document are
/// refused; so are numbers JSON cannot hold (`.inf`, `.nan`).
pub fn from_yaml(text: &str) -> Result<Value, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, true)
        .map_err(|e| e.to_string())?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    match builder.documents.len() {
        0 => Ok(Value::Null),
        1 => Ok(builder.documents.pop().unwrap_or(Value::Null)),
        n => Err(format!("expected one YAML document, found {n}")),
    }
}

/// A container being filled, with the key waiting for its value (mappings).
enum Open {
    Seq(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    documents: Vec<Value>,
    error: Option<String>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, message: &str) {
        if self.error.is_none() {
            self.error = Some(format!(
                "{message} at line {} column {}",
                mark.line(),
                mark.col() + 1
            ));
        }
    }

    /// Puts a finished value into the open container (or makes it the document).
    fn push(&mut self, value: Value, key_text: Option<String>, mark: Marker) {
        match self.stack.last_mut() {
            None => self.documents.push(value),
            Some(Open::Seq(items)) => items.push(value),
            Some(Open::Map(map, pending)) => match pending.take() {
                Some(key) => {
                    map.insert(key, value);
                }
                None => match key_text {
                    Some(key) => *pending = Some(key),
                    None => self.fail(mark, "a mapping key must be a scalar"),
                },
            },
        }
    }

    fn open(&mut self, container: Open, anchor: usize, mark: Marker) {
        if anchor != 0 {
            return self.fail(mark, "YAML anchors and aliases are not supported");
        }
        if self.stack.len() >= MAX_DEPTH {
            return self.fail(mark, &format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(container);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::SequenceStart(anchor, _) => self.open(Open::Seq(Vec::new()), anchor, mark),
            Event::MappingStart(anchor, _) => self.open(Open::Map(Map::new(), None), anchor, mark),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(items)) => self.push(Value::Array(items), None, mark),
                Some(Open::Map(map, _)) => self.push(Value::Object(map), None, mark),
                None => self.fail(mark, "unbalanced YAML"),
            },
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    return self.fail(mark, "YAML anchors and aliases are not supported");
                }
                let as_string = style != TScalarStyle::Plain
                    || tag
                        .as_ref()
                        .is_some_and(|t| t.handle == "tag:yaml.org,2002:" && t.suffix == "str")
                    || tag
                        .as_ref()
                        .is_some_and(|t| t.handle == "!!" && t.suffix == "str");
                let value = if as_string {
                    Value::String(text.clone())
                } else {
                    match scalar(&text) {
                        Ok(v) => v,
                        Err(e) => return self.fail(mark, &e),
                    }
                };
                self.push(value, Some(text), mark);
            }
            Event::Alias(_) => self.fail(mark, "YAML anchors and aliases are not supported"),
            _ => {}
        }
    }
}

/// A plain scalar as YAML 1.2's core schema reads it.
fn scalar(text: &str) -> Result<Value, String> {
    Ok(match Yaml::from_str(text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(real) => match Yaml::Real(real.clone()).as_f64().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => return Err(format!("{real} is not a number JSON can hold")),
        },
        _ => Value::String(text.to_string()),
    })
}

/// A value as a YAML document.
pub fn to_yaml(value: &Value) -> Result<String, String> {
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&yaml_of(value))
        .map_err(|e| format!("{e:?}"))?;
    out.push('\n');
    Ok(out)
}

fn yaml_of(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(yaml_of).collect()),
        Value::Object(map) => {
            let mut hash = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), yaml_of(v));
            }
            Yaml::Hash(hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_round_trips_json_values() {
        let value = json!({
            "name": "TEST", "n": 42, "neg": -7, "pi": 1.5, "yes": true, "none": null,
            "digits": "0123", "truth": "true", "empty": "", "list": [1, "two", {"three": [3]}],
            "multi": "line one\nline two", "nested": {}, "items": []
        });
        let text = to_yaml(&value).unwrap();
        assert_eq!(from_yaml(&text).unwrap(), value, "{text}");
    }

    #[test]
    fn yaml_reads_what_people_write() {
        let text = "staticdata:\n  out: /tmp/x\n  count: 3\nflag: yes\ntilde: ~\nquoted: '12'\n";
        assert_eq!(
            from_yaml(text).unwrap(),
            json!({"staticdata": {"out": "/tmp/x", "count": 3}, "flag": "yes",
                   "tilde": null, "quoted": "12"})
        );
        assert_eq!(from_yaml("[1, 2.5, abc]").unwrap(), json!([1, 2.5, "abc"]));
        assert_eq!(from_yaml("").unwrap(), Value::Null);
        assert_eq!(from_yaml("--- 5").unwrap(), json!(5));
        // JSON is YAML.
        assert_eq!(
            from_yaml(r#"{"a": [1, {"b": null}]}"#).unwrap(),
            json!({"a": [1, {"b": null}]})
        );
    }

    #[test]
    fn yaml_refuses_what_it_cannot_hold_safely() {
        for (text, expected) in [
            ("a: &x [1]\nb: *x\n", "aliases"),
            ("? [1, 2]\n: x\n", "mapping key must be a scalar"),
            ("a: .inf\n", "not a number"),
            ("--- 1\n--- 2\n", "one YAML document"),
            ("a: [1, 2\n", ""),
            ("{a: 1", ""),
        ] {
            let err = from_yaml(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(from_yaml(&deep).unwrap_err().contains("deeper"));
        let deep_block: String = (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(from_yaml(&deep_block).is_err());
    }

    #[test]
    fn bodies_by_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_format(&headers), Format::Json);
        assert_eq!(reply_format(&headers), Format::Json);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/x-yaml"),
        );
        assert_eq!(request_format(&headers), Format::Yaml);
        assert_eq!(reply_format(&headers), Format::Yaml, "YAML in, YAML out");
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert_eq!(
            reply_format(&headers),
            Format::Json,
            "unless JSON is asked for"
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/x-yaml;q=0.9"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(reply_format(&headers), Format::Yaml);

        assert_eq!(parse_body(Format::Json, b"  ").unwrap(), None);
        assert_eq!(
            parse_body(Format::Form, b"a=1&b=x%20y").unwrap(),
            Some(json!({"a": "1", "b": "x y"}))
        );
        let err = parse_body(Format::Json, b"{\"a\": ").unwrap_err();
        assert_eq!(err.code, "BAD-REQUEST");
        assert!(err.desc.contains("not valid JSON"), "{}", err.desc);
        assert!(parse_body(Format::Json, &[0xff, 0xfe]).is_err());
        let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse_body(Format::Json, deep.as_bytes()).is_err());
    }
}

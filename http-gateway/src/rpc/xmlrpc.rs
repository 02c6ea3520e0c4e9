//! XML-RPC (`/RPC2`, `text/xml`), as <http://xmlrpc.com/spec.md> has it, with the common
//! `<nil/>` and `<i8>` extensions. Python's standard `xmlrpc.client` interoperates (a test
//! feeds it our responses and us its requests).
//!
//! # Requests
//!
//! ```xml
//! <?xml version="1.0"?>
//! <methodCall><methodName>omq.system.get-order-info</methodName>
//!   <params><param><value><int>42</int></value></param></params></methodCall>
//! ```
//!
//! Each `<param>`'s value becomes one JSON param:
//!
//! | XML-RPC | JSON |
//! |---|---|
//! | `<int>`, `<i4>` (32-bit), `<i8>` (64-bit) | a number |
//! | `<boolean>` `1`/`0` (also `true`/`false`) | `true` / `false` |
//! | `<string>`, or bare text inside `<value>` | a string |
//! | `<double>` | a number (finite; `inf` and `nan` are refused: JSON has neither) |
//! | `<dateTime.iso8601>` | an RFC 3339 string: `20240102T03:04:05` becomes `"2024-01-02T03:04:05Z"`; a time without a zone is taken as UTC, a zone given is kept |
//! | `<base64>` | the decoded bytes as a string when they are UTF-8 text, else `{"$base64": "<standard base64>"}` |
//! | `<nil/>` | `null` |
//! | `<struct>` | an object (a name given twice: the last wins) |
//! | `<array>` | an array |
//!
//! Values nest at most [`MAX_DEPTH`] arrays and structs deep. Element prefixes are
//! ignored (`<ex:nil/>` is `<nil/>`), so are comments and processing instructions; a
//! `<!DOCTYPE` is refused, and so is any entity but XML's five and character references:
//! no external entities, no entity expansion. The body must be UTF-8 (a declared
//! `encoding` other than UTF-8 is accepted only for a pure ASCII body).
//!
//! # Responses
//!
//! Always HTTP 200, `text/xml; charset=utf-8`, UTF-8. A result is
//! `<methodResponse><params><param><value>…</value></param></params></methodResponse>`
//! with JSON mapped back: `null` → `<nil/>`, integers → `<int>` (or `<i8>` beyond 32
//! bits; beyond 64 bits a `<double>`), other numbers → `<double>` (plain decimal, as the
//! spec wants), a string → `<string>` (or `<base64>` of its UTF-8 bytes when it holds a
//! character XML 1.0 cannot carry, e.g. U+0001), an object `{"$base64": TEXT}` alone →
//! `<base64>`, other objects → `<struct>`, arrays → `<array>`. An error is a fault:
//!
//! ```xml
//! <methodResponse><fault><value><struct>
//!   <member><name>faultCode</name><value><int>104</int></value></member>
//!   <member><name>faultString</name><value><string>STATUS-ERROR: ...</string></value></member>
//! </struct></value></fault></methodResponse>
//! ```
//!
//! `faultCode` is 105 for `UNKNOWN-METHOD`, 104 for any error the called method raised,
//! -32700 for a request that is not well-formed (not XML, truncated, not UTF-8) and -32600
//! for one that is not an XML-RPC call (wrong root, no `<methodName>`, a malformed value,
//! a DOCTYPE, too deep); `faultString` is `CODE: description` (`PARSE-ERROR: ...`,
//! `INVALID-REQUEST: ...` for the last two).

use std::collections::VecDeque;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use quick_xml::events::{BytesDecl, BytesRef, Event};
use quick_xml::Reader;
use serde_json::{Map, Number, Value};

use super::{fault_code, fault_message, utf8_text, RpcCall, RpcError, RpcOutcome, MAX_DEPTH};

/// The content type of responses (requests come as `text/xml`).
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The key of the JSON object that stands for binary data: `{"$base64": "AP8="}`.
pub const BASE64_KEY: &str = "$base64";

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Reads `<base64>` with or without padding (the standard alphabet).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a `/RPC2` body: one `<methodCall>`. The call has no id.
pub fn decode_request(body: &[u8]) -> Result<RpcCall, RpcError> {
    let text = utf8_text(body)?;
    if text.trim().is_empty() {
        return Err(RpcError::Parse("the request body is empty".into()));
    }
    let mut parser = Parser::new(text);
    parser.call()
}

/// The response to a call: its result, or a fault.
pub fn encode_response(outcome: &RpcOutcome) -> Vec<u8> {
    match outcome {
        RpcOutcome::Ok(result) => {
            let mut out = String::from(DECLARATION);
            out.push_str("<methodResponse><params><param>");
            write_value(&mut out, result);
            out.push_str("</param></params></methodResponse>\n");
            out.into_bytes()
        }
        RpcOutcome::Err { code, desc, .. } => fault(fault_code(code), &fault_message(code, desc)),
    }
}

/// The fault answering a body [`decode_request`] refused.
pub fn encode_error(error: &RpcError) -> Vec<u8> {
    fault(error.code(), &fault_message(error.err(), error.desc()))
}

/// A `<methodCall>` (for clients and tests): each param encoded as a response value is.
pub fn encode_request(call: &RpcCall) -> Vec<u8> {
    let mut out = String::from(DECLARATION);
    out.push_str("<methodCall><methodName>");
    escape_text(&mut out, &call.method);
    out.push_str("</methodName><params>");
    for param in &call.params {
        out.push_str("<param>");
        write_value(&mut out, param);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out.into_bytes()
}

fn fault(code: i64, text: &str) -> Vec<u8> {
    let mut out = String::from(DECLARATION);
    out.push_str(
        "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>",
    );
    out.push_str(&code.to_string());
    out.push_str("</int></value></member><member><name>faultString</name><value><string>");
    escape_text(&mut out, &xml_safe(text));
    out.push_str("</string></value></member></struct></value></fault></methodResponse>\n");
    out.into_bytes()
}

// ---- encoding -------------------------------------------------------------------------------

/// Whether XML 1.0 can carry `c` at all (even as a character reference).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with the characters XML cannot carry replaced by U+FFFD.
fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect()
}

/// Escapes character data. `\r` becomes a reference: a parser would turn a raw one into
/// `\n` (XML's line-end normalisation).
fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// The bytes of a `{"$base64": TEXT}` object, when `map` is one.
fn binary(map: &Map<String, Value>) -> Option<Vec<u8>> {
    if map.len() != 1 {
        return None;
    }
    let text = map.get(BASE64_KEY)?.as_str()?;
    LENIENT_BASE64.decode(strip_whitespace(text)).ok()
}

fn strip_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

fn write_value(out: &mut String, value: &Value) {
    out.push_str("<value>");
    match value {
        Value::Null => out.push_str("<nil/>"),
        Value::Bool(b) => {
            out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            });
        }
        Value::Number(n) => write_number(out, n),
        Value::String(s) if s.chars().all(is_xml_char) => {
            out.push_str("<string>");
            escape_text(out, s);
            out.push_str("</string>");
        }
        Value::String(s) => {
            out.push_str("<base64>");
            out.push_str(&STANDARD.encode(s.as_bytes()));
            out.push_str("</base64>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                write_value(out, item);
            }
            out.push_str("</data></array>");
        }
        Value::Object(map) => match binary(map) {
            Some(bytes) => {
                out.push_str("<base64>");
                out.push_str(&STANDARD.encode(bytes));
                out.push_str("</base64>");
            }
            None => {
                out.push_str("<struct>");
                for (name, member) in map {
                    out.push_str("<member><name>");
                    escape_text(out, &xml_safe(name));
                    out.push_str("</name>");
                    write_value(out, member);
                    out.push_str("</member>");
                }
                out.push_str("</struct>");
            }
        },
    }
    out.push_str("</value>");
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let tag = if i32::try_from(i).is_ok() {
            "int"
        } else {
            "i8"
        };
        out.push_str(&format!("<{tag}>{i}</{tag}>"));
    } else if let Some(u) = n.as_u64() {
        // Beyond 64 signed bits: XML-RPC has no integer that large.
        out.push_str(&format!("<double>{u}</double>"));
    } else {
        // Rust prints an f64 in plain decimal, never with an exponent, and exactly enough
        // digits to read the same number back: what the spec asks of <double>.
        out.push_str(&format!("<double>{}</double>", n.as_f64().unwrap_or(0.0)));
    }
}

// ---- decoding -------------------------------------------------------------------------------

/// What the grammar reads: elements by local name, and text with its references resolved
/// (adjacent text, CDATA and references merged into one).
#[derive(Debug)]
enum Token {
    Start(String),
    End,
    Text(String),
    Eof,
}

/// What a container holds next.
enum Element {
    Start(String),
    End,
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    queue: VecDeque<Token>,
    ascii: bool,
}

fn invalid(text: impl Into<String>) -> RpcError {
    RpcError::Invalid(text.into())
}

fn truncated(inside: &str) -> RpcError {
    RpcError::Parse(format!(
        "the document ends inside {inside}: it is truncated"
    ))
}

/// A short quote of `text` for an error message.
fn quote(text: &str) -> String {
    let text = text.trim();
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        Parser {
            reader,
            queue: VecDeque::new(),
            ascii: text.is_ascii(),
        }
    }

    fn not_well_formed(&self, err: quick_xml::Error) -> RpcError {
        RpcError::Parse(format!(
            "not well-formed XML at byte {}: {err}",
            self.reader.error_position()
        ))
    }

    fn next(&mut self) -> Result<Token, RpcError> {
        if let Some(token) = self.queue.pop_front() {
            return Ok(token);
        }
        let mut text: Option<String> = None;
        loop {
            let event = self
                .reader
                .read_event()
                .map_err(|e| self.not_well_formed(e))?;
            let token =
                match event {
                    Event::Text(t) => {
                        let t = t
                            .xml10_content()
                            .map_err(|e| self.not_well_formed(e.into()))?;
                        text.get_or_insert_with(String::new).push_str(&t);
                        continue;
                    }
                    Event::CData(t) => {
                        let t = t
                            .xml10_content()
                            .map_err(|e| self.not_well_formed(e.into()))?;
                        text.get_or_insert_with(String::new).push_str(&t);
                        continue;
                    }
                    Event::GeneralRef(r) => {
                        let c = reference(&r)?;
                        text.get_or_insert_with(String::new).push(c);
                        continue;
                    }
                    Event::Comment(_) | Event::PI(_) => continue,
                    Event::Decl(decl) => {
                        self.check_declaration(&decl)?;
                        continue;
                    }
                    Event::DocType(_) => return Err(invalid(
                        "the document has a <!DOCTYPE>: DTDs and entity declarations are refused",
                    )),
                    Event::Start(e) => Token::Start(local_name(e.local_name().as_ref())),
                    Event::Empty(e) => {
                        self.queue.push_back(Token::End);
                        Token::Start(local_name(e.local_name().as_ref()))
                    }
                    Event::End(_) => Token::End,
                    Event::Eof => Token::Eof,
                };
            return Ok(match text {
                Some(text) => {
                    self.queue.push_front(token);
                    Token::Text(text)
                }
                None => token,
            });
        }
    }

    fn check_declaration(&self, decl: &BytesDecl<'_>) -> Result<(), RpcError> {
        let Some(Ok(encoding)) = decl.encoding() else {
            return Ok(());
        };
        let encoding = String::from_utf8_lossy(&encoding).to_ascii_lowercase();
        if matches!(encoding.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii") || self.ascii {
            return Ok(());
        }
        Err(invalid(format!(
            "the document declares encoding {encoding:?}: send UTF-8"
        )))
    }

    /// The next element start or end, skipping whitespace; text or the end of the
    /// document there is an error.
    fn next_element(&mut self, inside: &str) -> Result<Element, RpcError> {
        loop {
            match self.next()? {
                Token::Text(text) if text.trim().is_empty() => continue,
                Token::Text(text) => {
                    return Err(invalid(format!(
                        "unexpected text {} in {inside}",
                        quote(&text)
                    )))
                }
                Token::Eof => return Err(truncated(inside)),
                Token::Start(name) => return Ok(Element::Start(name)),
                Token::End => return Ok(Element::End),
            }
        }
    }

    /// The text of the element `<name>` just opened, up to its end.
    fn text_of(&mut self, name: &str) -> Result<String, RpcError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                Token::Text(t) => text.push_str(&t),
                Token::End => return Ok(text),
                Token::Start(inner) => {
                    return Err(invalid(format!(
                        "<{name}> holds text, not an element (<{inner}>)"
                    )))
                }
                Token::Eof => return Err(truncated(&format!("<{name}>"))),
            }
        }
    }

    fn call(&mut self) -> Result<RpcCall, RpcError> {
        loop {
            match self.next()? {
                Token::Text(text) if text.trim().is_empty() => continue,
                Token::Text(text) => {
                    return Err(RpcError::Parse(format!(
                        "the request is not XML: it starts with {}",
                        quote(&text)
                    )))
                }
                Token::Eof => {
                    return Err(RpcError::Parse("the document has no root element".into()))
                }
                Token::Start(name) if name == "methodCall" => break,
                Token::Start(name) => {
                    return Err(invalid(format!(
                        "the root element is <{name}>: an XML-RPC call is a <methodCall>"
                    )))
                }
                Token::End => return Err(RpcError::Parse("an end tag before any element".into())),
            }
        }
        let mut method = None;
        let mut params = None;
        loop {
            match self.next_element("<methodCall>")? {
                Element::Start(name) if name == "methodName" => {
                    if method.is_some() {
                        return Err(invalid("<methodCall> has two <methodName>s"));
                    }
                    let name = self.text_of("methodName")?.trim().to_string();
                    if name.is_empty() {
                        return Err(invalid("<methodName> is empty"));
                    }
                    method = Some(name);
                }
                Element::Start(name) if name == "params" => {
                    if params.is_some() {
                        return Err(invalid("<methodCall> has two <params>"));
                    }
                    params = Some(self.params()?);
                }
                Element::Start(name) => {
                    return Err(invalid(format!(
                        "unexpected <{name}> in <methodCall>: it holds <methodName> and <params>"
                    )))
                }
                Element::End => break,
            }
        }
        let method = method.ok_or_else(|| invalid("<methodCall> has no <methodName>"))?;
        loop {
            match self.next()? {
                Token::Eof => break,
                Token::Text(text) if text.trim().is_empty() => continue,
                Token::Text(text) => {
                    return Err(invalid(format!(
                        "text {} after </methodCall>",
                        quote(&text)
                    )))
                }
                Token::Start(name) => {
                    return Err(invalid(format!(
                        "an element <{name}> after </methodCall>: a document has one root"
                    )))
                }
                Token::End => return Err(RpcError::Parse("an end tag after the root".into())),
            }
        }
        Ok(RpcCall {
            method,
            params: params.unwrap_or_default(),
            id: None,
        })
    }

    fn params(&mut self) -> Result<Vec<Value>, RpcError> {
        let mut params = Vec::new();
        loop {
            match self.next_element("<params>")? {
                Element::Start(name) if name == "param" => {
                    match self.next_element("<param>")? {
                        Element::Start(name) if name == "value" => params.push(self.value(0)?),
                        Element::Start(name) => {
                            return Err(invalid(format!(
                                "<param> holds <{name}>: it holds one <value>"
                            )))
                        }
                        Element::End => return Err(invalid("a <param> holds no <value>")),
                    }
                    match self.next_element("<param>")? {
                        Element::End => {}
                        Element::Start(name) => {
                            return Err(invalid(format!(
                                "<param> holds more than one value (<{name}> after its <value>)"
                            )))
                        }
                    }
                }
                Element::Start(name) => {
                    return Err(invalid(format!(
                        "unexpected <{name}> in <params>: it holds <param>s"
                    )))
                }
                Element::End => return Ok(params),
            }
        }
    }

    /// The value of the `<value>` just opened, within `depth` arrays and structs.
    fn value(&mut self, depth: usize) -> Result<Value, RpcError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                Token::Text(t) => text.push_str(&t),
                // Bare text (or nothing) is a string.
                Token::End => return Ok(Value::String(text)),
                Token::Start(kind) => {
                    if !text.trim().is_empty() {
                        return Err(invalid(format!(
                            "<value> holds text {} and a <{kind}>",
                            quote(&text)
                        )));
                    }
                    let value = self.typed(&kind, depth)?;
                    return match self.next_element("<value>")? {
                        Element::End => Ok(value),
                        Element::Start(next) => Err(invalid(format!(
                            "<value> holds more than one value (<{next}> after <{kind}>)"
                        ))),
                    };
                }
                Token::Eof => return Err(truncated("<value>")),
            }
        }
    }

    fn typed(&mut self, kind: &str, depth: usize) -> Result<Value, RpcError> {
        match kind {
            "int" | "i4" => {
                let text = self.text_of(kind)?;
                text.trim().parse::<i32>().map(Value::from).map_err(|_| {
                    invalid(format!("<{kind}> {} is not a 32-bit integer", quote(&text)))
                })
            }
            "i8" => {
                let text = self.text_of(kind)?;
                text.trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| invalid(format!("<i8> {} is not a 64-bit integer", quote(&text))))
            }
            "boolean" => {
                let text = self.text_of(kind)?;
                match text.trim() {
                    "1" | "true" => Ok(Value::Bool(true)),
                    "0" | "false" => Ok(Value::Bool(false)),
                    _ => Err(invalid(format!("<boolean> {} is not 1 or 0", quote(&text)))),
                }
            }
            "string" => Ok(Value::String(self.text_of(kind)?)),
            "double" => {
                let text = self.text_of(kind)?;
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        invalid(format!("<double> {} is not a finite number", quote(&text)))
                    })
            }
            "dateTime.iso8601" => {
                let text = self.text_of(kind)?;
                date_time(text.trim()).map(Value::String).ok_or_else(|| {
                    invalid(format!(
                        "<dateTime.iso8601> {} is not a date and time (YYYYMMDDTHH:MM:SS)",
                        quote(&text)
                    ))
                })
            }
            "base64" => {
                let text = self.text_of(kind)?;
                let bytes = LENIENT_BASE64
                    .decode(strip_whitespace(&text))
                    .map_err(|e| invalid(format!("<base64> is not valid base64: {e}")))?;
                Ok(match String::from_utf8(bytes) {
                    Ok(text) => Value::String(text),
                    Err(e) => {
                        let mut object = Map::new();
                        object.insert(
                            BASE64_KEY.to_string(),
                            Value::String(STANDARD.encode(e.into_bytes())),
                        );
                        Value::Object(object)
                    }
                })
            }
            "nil" => {
                let text = self.text_of(kind)?;
                if text.trim().is_empty() {
                    Ok(Value::Null)
                } else {
                    Err(invalid("<nil/> holds text"))
                }
            }
            "array" | "struct" => {
                if depth >= MAX_DEPTH {
                    return Err(invalid(format!(
                        "the values are nested deeper than {MAX_DEPTH} arrays and structs"
                    )));
                }
                if kind == "array" {
                    self.array(depth + 1)
                } else {
                    self.structure(depth + 1)
                }
            }
            other => Err(invalid(format!("unknown XML-RPC type <{other}>"))),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, RpcError> {
        let mut items = Vec::new();
        match self.next_element("<array>")? {
            Element::Start(name) if name == "data" => loop {
                match self.next_element("<data>")? {
                    Element::Start(name) if name == "value" => items.push(self.value(depth)?),
                    Element::Start(name) => {
                        return Err(invalid(format!(
                            "unexpected <{name}> in <data>: it holds <value>s"
                        )))
                    }
                    Element::End => break,
                }
            },
            Element::Start(name) => {
                return Err(invalid(format!(
                    "unexpected <{name}> in <array>: it holds one <data>"
                )))
            }
            // `<array/>`: lenient, an empty array.
            Element::End => return Ok(Value::Array(items)),
        }
        match self.next_element("<array>")? {
            Element::End => Ok(Value::Array(items)),
            Element::Start(name) => {
                Err(invalid(format!("<array> holds <{name}> after its <data>")))
            }
        }
    }

    fn structure(&mut self, depth: usize) -> Result<Value, RpcError> {
        let mut map = Map::new();
        loop {
            match self.next_element("<struct>")? {
                Element::Start(name) if name == "member" => {
                    let (name, value) = self.member(depth)?;
                    map.insert(name, value);
                }
                Element::Start(name) => {
                    return Err(invalid(format!(
                        "unexpected <{name}> in <struct>: it holds <member>s"
                    )))
                }
                Element::End => return Ok(Value::Object(map)),
            }
        }
    }

    fn member(&mut self, depth: usize) -> Result<(String, Value), RpcError> {
        let mut name = None;
        let mut value = None;
        loop {
            match self.next_element("<member>")? {
                Element::Start(kind) if kind == "name" => {
                    if name.is_some() {
                        return Err(invalid("a <member> has two <name>s"));
                    }
                    name = Some(self.text_of("name")?);
                }
                Element::Start(kind) if kind == "value" => {
                    if value.is_some() {
                        return Err(invalid("a <member> has two <value>s"));
                    }
                    value = Some(self.value(depth)?);
                }
                Element::Start(kind) => {
                    return Err(invalid(format!(
                        "unexpected <{kind}> in <member>: it holds <name> and <value>"
                    )))
                }
                Element::End => break,
            }
        }
        let name = name.ok_or_else(|| invalid("a <member> has no <name>"))?;
        let value = value.ok_or_else(|| invalid(format!("member {name:?} has no <value>")))?;
        Ok((name, value))
    }
}

fn local_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// A reference in text: a character reference, or one of XML's five entities.
fn reference(r: &BytesRef<'_>) -> Result<char, RpcError> {
    let name = String::from_utf8_lossy(r).into_owned();
    match r.resolve_char_ref() {
        Ok(Some(c)) => return Ok(c),
        Ok(None) => {}
        Err(e) => return Err(invalid(format!("bad character reference &{name};: {e}"))),
    }
    match name.as_str() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => Err(invalid(format!(
            "undefined entity &{name};: only &lt; &gt; &amp; &apos; &quot; and character \
             references are known"
        ))),
    }
}

/// An XML-RPC date and time as RFC 3339: `YYYYMMDDTHH:MM:SS` (the spec's form) or
/// `YYYY-MM-DDTHH:MM:SS`, the time also as `HHMMSS`, with optional fractional seconds and
/// zone (`Z`, `+HH:MM`, `+HHMM`); no zone is UTC.
fn date_time(text: &str) -> Option<String> {
    let mut rest = text.as_bytes();
    let number = |n: usize, rest: &mut &[u8]| -> Option<u32> {
        let (digits, tail) = rest.split_at_checked(n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *rest = tail;
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let skip = |c: u8, rest: &mut &[u8]| -> bool {
        match rest.split_first() {
            Some((first, tail)) if *first == c => {
                *rest = tail;
                true
            }
            _ => false,
        }
    };
    let year = number(4, &mut rest)?;
    let dashes = skip(b'-', &mut rest);
    let month = number(2, &mut rest)?;
    if dashes && !skip(b'-', &mut rest) {
        return None;
    }
    let day = number(2, &mut rest)?;
    if !skip(b'T', &mut rest) {
        return None;
    }
    let hour = number(2, &mut rest)?;
    let colons = skip(b':', &mut rest);
    let minute = number(2, &mut rest)?;
    if colons && !skip(b':', &mut rest) {
        return None;
    }
    let second = number(2, &mut rest)?;
    let mut fraction = String::new();
    if skip(b'.', &mut rest) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        fraction.push('.');
        fraction.push_str(std::str::from_utf8(&rest[..digits]).ok()?);
        rest = &rest[digits..];
    }
    let zone = if rest.is_empty() || skip(b'Z', &mut rest) {
        "Z".to_string()
    } else {
        let sign = if skip(b'+', &mut rest) {
            '+'
        } else if skip(b'-', &mut rest) {
            '-'
        } else {
            return None;
        };
        let hours = number(2, &mut rest)?;
        skip(b':', &mut rest);
        let minutes = number(2, &mut rest)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        format!("{sign}{hours:02}:{minutes:02}")
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !rest.is_empty() || day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `xmlrpc.client.dumps((1, "a", {"k": [1.5, True]}), "omq.user.service.X.echo")`,
    /// Python 3.11.
    const PYTHON_CALL: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>omq.user.service.X.echo</methodName>\n<params>\n<param>\n<value><int>1</int></value>\n</param>\n<param>\n<value><string>a</string></value>\n</param>\n<param>\n<value><struct>\n<member>\n<name>k</name>\n<value><array><data>\n<value><double>1.5</double></value>\n<value><boolean>1</boolean></value>\n</data></array></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodCall>\n";

    /// `xmlrpc.client.dumps((None, Binary(b"\x00\xffhi"), Binary(b"hello"),
    /// DateTime("20240102T03:04:05"), "x<&>y\r\n", -2**31, 2.5e-7, [], {},
    /// {"a b": {"c": []}}), "m", allow_none=True)`.
    const PYTHON_TYPES: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>m</methodName>\n<params>\n<param>\n<value><nil/></value></param>\n<param>\n<value><base64>\nAP9oaQ==\n</base64></value>\n</param>\n<param>\n<value><base64>\naGVsbG8=\n</base64></value>\n</param>\n<param>\n<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>\n</param>\n<param>\n<value><string>x&lt;&amp;&gt;y\r\n</string></value>\n</param>\n<param>\n<value><int>-2147483648</int></value>\n</param>\n<param>\n<value><double>2.5e-07</double></value>\n</param>\n<param>\n<value><array><data>\n</data></array></value>\n</param>\n<param>\n<value><struct>\n</struct></value>\n</param>\n<param>\n<value><struct>\n<member>\n<name>a b</name>\n<value><struct>\n<member>\n<name>c</name>\n<value><array><data>\n</data></array></value>\n</member>\n</struct></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodCall>\n";

    fn decode(body: &str) -> RpcCall {
        decode_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn call_with(value: &str) -> String {
        format!(
            "<methodCall><methodName>m</methodName><params><param>{value}</param></params></methodCall>"
        )
    }

    fn param(value: &str) -> Value {
        decode(&call_with(value)).params.remove(0)
    }

    #[test]
    fn python_client_requests_decode() {
        assert_eq!(
            decode(PYTHON_CALL),
            RpcCall {
                method: "omq.user.service.X.echo".into(),
                params: vec![json!(1), json!("a"), json!({"k": [1.5, true]})],
                id: None,
            }
        );
        assert_eq!(
            decode(PYTHON_TYPES).params,
            vec![
                Value::Null,
                json!({"$base64": "AP9oaQ=="}),
                json!("hello"),
                json!("2024-01-02T03:04:05Z"),
                // XML's line-end normalisation: the raw CR LF is a LF.
                json!("x<&>y\n"),
                json!(-2147483648),
                json!(2.5e-7),
                json!([]),
                json!({}),
                json!({"a b": {"c": []}}),
            ]
        );
    }

    #[test]
    fn every_type_decodes() {
        for (xml, want) in [
            ("<value><int>7</int></value>", json!(7)),
            ("<value><i4> -7 </i4></value>", json!(-7)),
            ("<value><int>+2147483647</int></value>", json!(2147483647)),
            ("<value><i8>-9223372036854775808</i8></value>", json!(i64::MIN)),
            ("<value><ex:i8 xmlns:ex=\"x\">5</ex:i8></value>", json!(5)),
            ("<value><boolean>0</boolean></value>", json!(false)),
            ("<value><boolean>true</boolean></value>", json!(true)),
            ("<value><string>a &amp; b &#x263A; &#65;</string></value>", json!("a & b \u{263A} A")),
            ("<value><string><![CDATA[<raw> & ]]>tail</string></value>", json!("<raw> & tail")),
            ("<value><string/></value>", json!("")),
            ("<value>  bare text  </value>", json!("  bare text  ")),
            ("<value></value>", json!("")),
            ("<value/>", json!("")),
            ("<value> <string>s</string> <!-- c --> </value>", json!("s")),
            ("<value><double>-0.5</double></value>", json!(-0.5)),
            ("<value><double>1e3</double></value>", json!(1000.0)),
            ("<value><dateTime.iso8601>2024-02-29T23:59:60.25+01:30</dateTime.iso8601></value>",
             json!("2024-02-29T23:59:60.25+01:30")),
            ("<value><dateTime.iso8601>20240102T030405-0500</dateTime.iso8601></value>",
             json!("2024-01-02T03:04:05-05:00")),
            ("<value><base64>aGk</base64></value>", json!("hi")),
            ("<value><base64></base64></value>", json!("")),
            ("<value><nil/></value>", Value::Null),
            ("<value><ex:nil/></value>", Value::Null),
            ("<value><array/></value>", json!([])),
            ("<value><array><data><value>1</value><value><int>2</int></value></data></array></value>",
             json!(["1", 2])),
            ("<value><struct><member><value><int>1</int></value><name>a</name></member>\
              <member><name>a</name><value><int>2</int></value></member></struct></value>",
             json!({"a": 2})),
        ] {
            assert_eq!(param(xml), want, "{xml}");
        }
        // No params at all, or an empty <params>.
        assert_eq!(
            decode("<methodCall><methodName> system.listMethods </methodName></methodCall>"),
            RpcCall {
                method: "system.listMethods".into(),
                params: vec![],
                id: None
            }
        );
        assert!(decode("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>m</methodName><params/></methodCall>")
            .params
            .is_empty());
    }

    #[test]
    fn every_type_round_trips() {
        let mut deep = json!("bottom");
        for i in 0..MAX_DEPTH {
            deep = if i % 2 == 0 {
                json!([deep])
            } else {
                json!({"k": deep})
            };
        }
        let params = vec![
            Value::Null,
            json!(true),
            json!(false),
            json!(0),
            json!(i32::MAX),
            json!(i32::MIN),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(-1.5e300),
            json!(4.9e-324),
            json!(""),
            json!("<tag attr=\"v\"> & ]]> 'q' \r\n\t é 😀"),
            // Characters XML cannot carry travel as base64 and come back as text.
            json!("bell \u{7} nul \u{0} \u{FFFE}"),
            json!({"$base64": "AP8A"}),
            json!([]),
            json!({}),
            json!([1, [2, [3, {"x": null}]], {"a": {"b": [true, "s"]}}]),
            json!({"": 1, "a&<b>": "c", "$base64": 1}),
            deep,
        ];
        let call = RpcCall {
            method: "omq.user.service.svc.m<&>".into(),
            params,
            id: None,
        };
        let encoded = encode_request(&call);
        assert_eq!(decode_request(&encoded), Ok(call));
    }

    #[test]
    fn results_and_faults_encode() {
        assert_eq!(
            String::from_utf8(encode_response(&RpcOutcome::Ok(json!({"a": [1, "x"]})))).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse><params><param><value>\
             <struct><member><name>a</name><value><array><data><value><int>1</int></value>\
             <value><string>x</string></value></data></array></value></member></struct>\
             </value></param></params></methodResponse>\n"
        );
        assert_eq!(
            String::from_utf8(encode_response(&RpcOutcome::error(
                "STATUS-ERROR",
                "a < b & c"
            )))
            .unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse><fault><value><struct>\
             <member><name>faultCode</name><value><int>104</int></value></member>\
             <member><name>faultString</name><value><string>STATUS-ERROR: a &lt; b &amp; c</string>\
             </value></member></struct></value></fault></methodResponse>\n"
        );
        let unknown = String::from_utf8(encode_response(&RpcOutcome::unknown_method("x"))).unwrap();
        assert!(unknown.contains("<int>105</int>"), "{unknown}");
        assert!(
            unknown.contains("UNKNOWN-METHOD: no method \"x\""),
            "{unknown}"
        );
        let big = String::from_utf8(encode_response(&RpcOutcome::Ok(json!([
            5_000_000_000i64,
            u64::MAX,
            1.0
        ]))))
        .unwrap();
        assert!(big.contains("<i8>5000000000</i8>"), "{big}");
        assert!(
            big.contains("<double>18446744073709551615</double>"),
            "{big}"
        );
        assert!(big.contains("<double>1</double>"), "{big}");
    }

    fn refused(body: &[u8]) -> RpcError {
        let err = decode_request(body).expect_err("refused");
        let fault = String::from_utf8(encode_error(&err)).expect("UTF-8");
        assert!(
            fault.contains(&format!("<int>{}</int>", err.code())),
            "{fault}"
        );
        assert!(fault.contains("<name>faultString</name>"), "{fault}");
        err
    }

    #[test]
    fn malformed_requests_get_faults() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
            <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\
            <methodCall><methodName>&lol2;</methodName></methodCall>";
        let xxe =
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
            <methodCall><methodName>&xxe;</methodName></methodCall>";
        let bomb = "<methodCall><methodName>m</methodName><params><param>".to_string()
            + &"<value><array><data>".repeat(100_000);
        let mut just_too_deep = "<value><string>x</string></value>".to_string();
        for _ in 0..=MAX_DEPTH {
            just_too_deep = format!("<value><array><data>{just_too_deep}</data></array></value>");
        }
        let full = call_with("<value><int>1</int></value>");
        let cut_in_int = full[..full.find("</int>").unwrap_or(0)].to_string();
        let cases: Vec<(Vec<u8>, i64, &str)> = vec![
            (b"".to_vec(), -32700, "empty"),
            (b"{\"method\": \"m\"}".to_vec(), -32700, "not XML"),
            (b"<methodCall><methodName>m</methodName>".to_vec(), -32700, "truncated"),
            (cut_in_int.into_bytes(), -32700, "truncated"),
            (b"<methodCall><methodName>m</methodNam></methodCall>".to_vec(), -32700, "not well-formed"),
            (b"<methodCall><methodName>m\xC3\x28</methodName></methodCall>".to_vec(), -32700, "not UTF-8"),
            (b"<?xml version=\"1.0\"?>".to_vec(), -32700, "no root"),
            (b"<methodResponse><params/></methodResponse>".to_vec(), -32600, "root element is <methodResponse>"),
            (b"<methodCall><params/></methodCall>".to_vec(), -32600, "no <methodName>"),
            (b"<methodCall><methodName> </methodName></methodCall>".to_vec(), -32600, "empty"),
            (b"<methodCall><methodName>m</methodName><extra/></methodCall>".to_vec(), -32600, "unexpected <extra>"),
            (b"<methodCall><methodName>m</methodName></methodCall><again/>".to_vec(), -32600, "after </methodCall>"),
            (b"<methodCall><methodName>m<b/></methodName></methodCall>".to_vec(), -32600, "holds text"),
            (laughs.as_bytes().to_vec(), -32600, "DOCTYPE"),
            (xxe.as_bytes().to_vec(), -32600, "DOCTYPE"),
            (b"<methodCall><methodName>&xxe;</methodName></methodCall>".to_vec(), -32600, "undefined entity &xxe;"),
            (bomb.into_bytes(), -32600, "nested deeper than 128"),
            (call_with(&just_too_deep).into_bytes(), -32600, "nested deeper than 128"),
            (call_with("<value><int>abc</int></value>").into_bytes(), -32600, "not a 32-bit integer"),
            (call_with("<value><int>1.5</int></value>").into_bytes(), -32600, "not a 32-bit integer"),
            (call_with("<value><int>2147483648</int></value>").into_bytes(), -32600, "not a 32-bit integer"),
            (call_with("<value><int></int></value>").into_bytes(), -32600, "not a 32-bit integer"),
            (call_with("<value><i8>9223372036854775808</i8></value>").into_bytes(), -32600, "not a 64-bit integer"),
            (call_with("<value><boolean>2</boolean></value>").into_bytes(), -32600, "not 1 or 0"),
            (call_with("<value><double>inf</double></value>").into_bytes(), -32600, "not a finite number"),
            (call_with("<value><double>NaN</double></value>").into_bytes(), -32600, "not a finite number"),
            (call_with("<value><double>x</double></value>").into_bytes(), -32600, "not a finite number"),
            (call_with("<value><dateTime.iso8601>20240230T00:00:00</dateTime.iso8601></value>").into_bytes(), -32600, "not a date"),
            (call_with("<value><dateTime.iso8601>yesterday</dateTime.iso8601></value>").into_bytes(), -32600, "not a date"),
            (call_with("<value><base64>@@@</base64></value>").into_bytes(), -32600, "not valid base64"),
            (call_with("<value><float>1</float></value>").into_bytes(), -32600, "unknown XML-RPC type <float>"),
            (call_with("<value>text<int>1</int></value>").into_bytes(), -32600, "holds text"),
            (call_with("<value><int>1</int><int>2</int></value>").into_bytes(), -32600, "more than one value"),
            (call_with("<value><int>1</int></value><value/>").into_bytes(), -32600, "more than one value"),
            (call_with("").into_bytes(), -32600, "holds no <value>"),
            (call_with("<value><nil>x</nil></value>").into_bytes(), -32600, "holds text"),
            (call_with("<value><array><value/></array></value>").into_bytes(), -32600, "unexpected <value> in <array>"),
            (call_with("<value><struct><member><name>a</name></member></struct></value>").into_bytes(), -32600, "has no <value>"),
            (call_with("<value><struct><member><value/></member></struct></value>").into_bytes(), -32600, "has no <name>"),
            (call_with("<value><struct>x</struct></value>").into_bytes(), -32600, "unexpected text"),
            ("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>é</methodName></methodCall>".as_bytes().to_vec(), -32600, "encoding"),
        ];
        for (body, code, text) in cases {
            let shown = String::from_utf8_lossy(&body)
                .chars()
                .take(120)
                .collect::<String>();
            let err = refused(&body);
            assert_eq!(err.code(), code, "{shown}: {err}");
            assert!(err.desc().contains(text), "{shown}: {err}");
        }
    }

    #[test]
    fn date_times_become_rfc3339() {
        for (given, want) in [
            ("20240102T03:04:05", Some("2024-01-02T03:04:05Z")),
            ("2024-01-02T03:04:05Z", Some("2024-01-02T03:04:05Z")),
            ("20240102T030405.123", Some("2024-01-02T03:04:05.123Z")),
            (
                "2000-02-29T00:00:00+00:00",
                Some("2000-02-29T00:00:00+00:00"),
            ),
            ("1900-02-29T00:00:00", None),
            ("20241301T00:00:00", None),
            ("20240102T24:00:00", None),
            ("20240102 03:04:05", None),
            ("2024-0102T03:04:05", None),
            ("20240102T03:04:05+", None),
            ("20240102T03:04:05.", None),
            ("20240102T03:04:05Zjunk", None),
            ("２０２４0102T03:04:05", None),
        ] {
            assert_eq!(date_time(given).as_deref(), want, "{given}");
        }
    }

    /// Runs Python's `xmlrpc.client.loads` on `body`; prints the params (or the fault) as
    /// JSON, binary as `{"$base64": ...}`.
    fn python_loads(body: &[u8]) -> Value {
        use std::io::Write as _;
        let script = r#"
import base64, json, sys, xmlrpc.client
def default(o):
    if isinstance(o, xmlrpc.client.Binary):
        return {"$base64": base64.b64encode(o.data).decode()}
    raise TypeError(repr(o))
try:
    params, method = xmlrpc.client.loads(sys.stdin.buffer.read())
    print(json.dumps({"params": params}, default=default))
except xmlrpc.client.Fault as f:
    print(json.dumps({"faultCode": f.faultCode, "faultString": f.faultString}))
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (the interop test needs it)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body)
            .expect("write");
        let out = child.wait_with_output().expect("python3 ends");
        assert!(
            out.status.success(),
            "python3 failed on {}: {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("python printed JSON")
    }

    #[test]
    fn python_client_reads_our_responses() {
        let result = json!({
            "int": 1, "big": 5_000_000_000i64, "neg": -2147483648, "double": 2.5e-7,
            "bool": [true, false], "null": null, "text": "<&> é 😀 \r\n",
            "control": "a\u{1}b", "binary": {"$base64": "AP8="},
            "nested": [[], {}, [{"a": [1, [2]]}]],
        });
        let got = python_loads(&encode_response(&RpcOutcome::Ok(result.clone())));
        let mut want = result;
        // A string XML cannot carry reaches Python as bytes.
        want["control"] = json!({"$base64": "YQFi"});
        assert_eq!(got, json!({"params": [want]}));

        let fault = RpcOutcome::Err {
            code: "ValueError".into(),
            desc: "bad <value> & more".into(),
            info: Some(json!({"traceback": "t"})),
        };
        assert_eq!(
            python_loads(&encode_response(&fault)),
            json!({"faultCode": 104, "faultString": "ValueError: bad <value> & more"})
        );
        assert_eq!(
            python_loads(&encode_response(&RpcOutcome::unknown_method(
                "omq.system.nope"
            ))),
            json!({"faultCode": 105, "faultString": "UNKNOWN-METHOD: no method \"omq.system.nope\""})
        );
        let err = decode_request(b"<methodCall>").expect_err("truncated");
        assert_eq!(
            python_loads(&encode_error(&err)),
            json!({"faultCode": -32700, "faultString": format!("PARSE-ERROR: {}", err.desc())})
        );
        // And Python reads the requests we write.
        let call = RpcCall {
            method: "omq.system.get-order-info".into(),
            params: vec![json!(42), json!({"k": [null]})],
            id: None,
        };
        assert_eq!(
            python_loads(&encode_request(&call)),
            json!({"params": [42, {"k": [null]}]})
        );
    }
}

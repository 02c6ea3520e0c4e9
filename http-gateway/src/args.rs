//! A route's arguments from the path, the query string and the body, checked against the
//! route's parameters and converted to the JSON the master's verb takes.
//!
//! The query string carries text; each parameter's [`Kind`] says how to read it (`5` is an
//! integer for `priority`, text for `note`). Body values are JSON already and are checked
//! the same way. An argument the route does not take is refused, so a misspelt one never
//! goes unnoticed; a parameter given in both the body and the query takes the body's value.

use serde_json::{Map, Value};

use crate::errors::ApiError;
use crate::format;
use crate::routes::{In, Kind, Param, Route};

/// The query parameter that selects a route's action; it is not an argument.
pub const ACTION: &str = "action";

/// The arguments of `route` as a JSON object.
pub fn collect(
    route: &Route,
    path: &[(String, String)],
    query: &[(String, String)],
    body: Option<Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut args = Map::new();
    match body {
        None | Some(Value::Null) => {}
        Some(Value::Object(object)) => {
            for (name, value) in object {
                let param = taken(route, &name)?;
                let value = coerce(param, value, false)?;
                args.insert(name, value);
            }
        }
        Some(other) => {
            return Err(ApiError::new(
                "BAD-REQUEST",
                format!(
                    "the request body must be an object of arguments (JSON object or YAML \
                     mapping), not {}",
                    kind_of(&other)
                ),
            ))
        }
    }
    let mut from_query: Map<String, Value> = Map::new();
    for (name, text) in query.iter().filter(|(name, _)| name != ACTION) {
        let param = taken(route, name)?;
        if args.contains_key(name) {
            continue;
        }
        let value = coerce(param, Value::String(text.clone()), true)?;
        match (from_query.get_mut(name), param.kind) {
            (None, _) => {
                from_query.insert(name.clone(), value);
            }
            (Some(Value::Array(items)), Kind::StrList | Kind::IntList) => {
                if let Value::Array(more) = value {
                    items.extend(more);
                }
            }
            (Some(existing), Kind::Any) => {
                // A repeated `args=` gives several values.
                let first = existing.take();
                *existing = match first {
                    Value::Array(mut items) if name == "args" => {
                        items.push(value);
                        Value::Array(items)
                    }
                    first => Value::Array(vec![first, value]),
                };
            }
            (Some(_), _) => {
                return Err(ApiError::invalid(format!(
                    "argument {name:?} is given more than once in the query string"
                )))
            }
        }
    }
    args.extend(from_query);
    for (name, text) in path {
        let Some(param) = route
            .params
            .iter()
            .find(|p| p.name == name && p.location == In::Path)
        else {
            continue;
        };
        match param.kind {
            Kind::NameOrId(id_key) => match text.parse::<i64>() {
                Ok(id) => {
                    args.insert(id_key.to_string(), Value::from(id));
                }
                Err(_) => {
                    args.insert(name.clone(), Value::String(text.clone()));
                }
            },
            _ => {
                let value = coerce(param, Value::String(text.clone()), true)?;
                args.insert(name.clone(), value);
            }
        }
    }
    for param in route.params.iter().filter(|p| p.required) {
        let present = match param.kind {
            Kind::NameOrId(id_key) => args.contains_key(param.name) || args.contains_key(id_key),
            _ => args.contains_key(param.name),
        };
        if !present {
            return Err(ApiError::invalid(format!(
                "{} needs the argument {:?} ({}), in the query string or the body",
                route.title(),
                param.name,
                param.description
            )));
        }
    }
    Ok(args)
}

/// The parameter `name` of `route` when it is given as an argument (not a path segment).
fn taken(route: &Route, name: &str) -> Result<&'static Param, ApiError> {
    match route.param(name) {
        Some(param) if param.location == In::Args => Ok(param),
        _ => {
            let known: Vec<&str> = route
                .params
                .iter()
                .filter(|p| p.location == In::Args)
                .map(|p| p.name)
                .collect();
            Err(ApiError::invalid(format!(
                "{} takes no argument {name:?}{}",
                route.title(),
                if known.is_empty() {
                    String::new()
                } else {
                    format!("; it takes {}", known.join(", "))
                }
            )))
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks and converts one argument; `from_text` when it came from the query string or
/// the path (text that may stand for a number, a list, ...).
fn coerce(param: &Param, value: Value, from_text: bool) -> Result<Value, ApiError> {
    let wrong = |value: &Value, expected: &str| {
        ApiError::invalid(format!(
            "argument {:?} must be {expected}, not {}",
            param.name,
            match value {
                Value::String(s) if from_text => format!("{s:?}"),
                other => kind_of(other).to_string(),
            }
        ))
    };
    Ok(match (param.kind, value) {
        (Kind::Str | Kind::NameOrId(_), Value::String(s)) => Value::String(s),
        // YAML reads `version: 1.0` as a number; the version is still "1.0".
        (Kind::Str | Kind::NameOrId(_), v @ (Value::Number(_) | Value::Bool(_))) => {
            Value::String(v.to_string())
        }
        (Kind::Str | Kind::NameOrId(_), other) => return Err(wrong(&other, "text")),
        (Kind::Int, Value::Number(n)) if n.is_i64() => Value::Number(n),
        (Kind::Int, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => return Err(wrong(&Value::String(s), "an integer")),
        },
        (Kind::Int, other) => return Err(wrong(&other, "an integer")),
        (Kind::Bool, Value::Bool(b)) => Value::Bool(b),
        (Kind::Bool, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => return Err(wrong(&Value::String(s), "true or false")),
        },
        (Kind::Bool, Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Value::Bool(n.as_i64() == Some(1))
        }
        (Kind::Bool, other) => return Err(wrong(&other, "true or false")),
        (Kind::Any, Value::String(s)) if from_text => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        (Kind::Any, value) => value,
        (Kind::Object, Value::Object(o)) => Value::Object(o),
        (Kind::Object, Value::String(s)) if from_text => match format::from_yaml(&s) {
            Ok(Value::Object(o)) => Value::Object(o),
            _ => return Err(wrong(&Value::String(s), "an object (JSON or YAML text)")),
        },
        (Kind::Object, other) => return Err(wrong(&other, "an object")),
        (Kind::StrList, Value::String(s)) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        (Kind::StrList, Value::Array(items)) => {
            for item in &items {
                if !item.is_string() {
                    return Err(wrong(item, "a list of strings"));
                }
            }
            Value::Array(items)
        }
        (Kind::StrList, other) => return Err(wrong(&other, "a list of strings")),
        (Kind::IntList, Value::String(s)) => {
            let mut items = Vec::new();
            for part in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match part.parse::<i64>() {
                    Ok(n) => items.push(Value::from(n)),
                    Err(_) => {
                        return Err(wrong(
                            &Value::String(s.clone()),
                            "a list of integers (`1,2,3`)",
                        ))
                    }
                }
            }
            Value::Array(items)
        }
        (Kind::IntList, Value::Number(n)) if n.is_i64() => Value::Array(vec![Value::Number(n)]),
        (Kind::IntList, Value::Array(items)) => {
            for item in &items {
                if !item.is_i64() {
                    return Err(wrong(item, "a list of integers"));
                }
            }
            Value::Array(items)
        }
        (Kind::IntList, other) => return Err(wrong(&other, "a list of integers")),
        (Kind::Time, Value::Null) => Value::Null,
        (Kind::Time, Value::Number(n)) if n.is_i64() => Value::Number(n),
        (Kind::Time, Value::String(s)) if from_text && s.eq_ignore_ascii_case("null") => {
            Value::Null
        }
        (Kind::Time, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(ms) => Value::from(ms),
            Err(_) => Value::String(s),
        },
        (Kind::Time, other) => {
            return Err(wrong(
                &other,
                "a time (ms since the epoch, RFC 3339 text or null)",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{group, Method, Scope};
    use serde_json::json;

    fn route(method: Method, path: &str, action: Option<&str>) -> &'static Route {
        group(Scope::Latest, method, path)
            .into_iter()
            .find(|r| r.action == action)
            .expect("route")
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn query_text_becomes_typed_arguments() {
        let r = route(
            Method::Put,
            "/orders/{workflow_instanceid}",
            Some("setPriority"),
        );
        let args = collect(
            r,
            &q(&[("workflow_instanceid", "42")]),
            &q(&[("action", "setPriority"), ("priority", "7")]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"workflow_instanceid": 42, "priority": 7})
        );

        let err = collect(
            r,
            &q(&[("workflow_instanceid", "x")]),
            &q(&[("priority", "7")]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code, "INVALID-ARGUMENT");

        let err = collect(r, &q(&[("workflow_instanceid", "1")]), &[], None).unwrap_err();
        assert!(
            err.desc.contains("needs the argument \"priority\""),
            "{}",
            err.desc
        );

        let err = collect(
            r,
            &q(&[("workflow_instanceid", "1")]),
            &q(&[("priority", "high")]),
            None,
        )
        .unwrap_err();
        assert!(err.desc.contains("must be an integer"), "{}", err.desc);
    }

    #[test]
    fn body_and_query_combine_and_unknown_arguments_are_refused() {
        let r = route(Method::Post, "/workflows/{name}", Some("createOrder"));
        let args = collect(
            r,
            &q(&[("name", "WF")]),
            &q(&[("priority", "9"), ("staticdata", "{\"a\": 1}")]),
            Some(json!({"staticdata": {"b": 2}, "orderkeys": {"k": "v"}})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"name": "WF", "priority": 9, "staticdata": {"b": 2}, "orderkeys": {"k": "v"}}),
            "the body's staticdata wins"
        );
        let err = collect(
            r,
            &q(&[("name", "WF")]),
            &[],
            Some(json!({"staticdata": {}, "stativdata": {}})),
        )
        .unwrap_err();
        assert!(
            err.desc.contains("no argument \"stativdata\""),
            "{}",
            err.desc
        );
        let err = collect(r, &q(&[("name", "WF")]), &[], Some(json!([1]))).unwrap_err();
        assert_eq!(err.code, "BAD-REQUEST");
        // A path parameter cannot be overridden from the query.
        let err = collect(
            r,
            &q(&[("name", "WF")]),
            &q(&[("name", "OTHER"), ("staticdata", "{}")]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code, "INVALID-ARGUMENT");
    }

    #[test]
    fn lists_times_bools_and_ids() {
        let search = route(Method::Get, "/orders", None);
        let args = collect(
            search,
            &[],
            &q(&[
                ("status", "ERROR,R"),
                ("status", "C"),
                ("mindate", "2030-01-01T00:00:00Z"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"status": ["ERROR", "R", "C"], "mindate": "2030-01-01T00:00:00Z"})
        );
        let expiry = route(Method::Put, "/jobs/{name}", Some("setExpiry"));
        let args = collect(
            expiry,
            &q(&[("name", "12")]),
            &q(&[("expiry_date", "null")]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"jobid": 12, "expiry_date": null})
        );
        let active = route(Method::Put, "/jobs/{name}", Some("setActive"));
        let args = collect(
            active,
            &q(&[("name", "CLEANUP")]),
            &q(&[("active", "false")]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"name": "CLEANUP", "active": false})
        );
        let args = collect(
            active,
            &q(&[("name", "CLEANUP")]),
            &[],
            Some(json!({"active": true, "version": 1.0})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"name": "CLEANUP", "active": true, "version": "1.0"})
        );
    }

    #[test]
    fn bulk_ids_and_workflow_arguments() {
        let bulk = route(Method::Put, "/orders", Some("retry"));
        let args = collect(bulk, &[], &q(&[("ids", "1, 2,3"), ("ids", "4")]), None).unwrap();
        assert_eq!(args["ids"], json!([1, 2, 3, 4]));
        let args = collect(bulk, &[], &[], Some(json!({"ids": [5, 6]}))).unwrap();
        assert_eq!(args["ids"], json!([5, 6]));
        let args = collect(bulk, &[], &[], Some(json!({"ids": 7}))).unwrap();
        assert_eq!(args["ids"], json!([7]));
        for bad in [
            json!({"ids": ["x"]}),
            json!({"ids": [1.5]}),
            json!({"ids": "a,b"}),
        ] {
            let err = collect(bulk, &[], &[], Some(bad.clone())).unwrap_err();
            assert_eq!(err.code, "INVALID-ARGUMENT", "{bad}");
        }
        let err = collect(bulk, &[], &[], None).unwrap_err();
        assert!(err.desc.contains("\"ids\""), "{}", err.desc);

        let autostart = route(Method::Put, "/workflows/{name}", Some("setAutostart"));
        let args = collect(
            autostart,
            &q(&[("name", "TEST-FLOW")]),
            &q(&[("autostart", "0")]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"name": "TEST-FLOW", "autostart": 0})
        );
        let get = route(Method::Get, "/workflows/{name}", None);
        let args = collect(get, &q(&[("name", "12")]), &[], None).unwrap();
        assert_eq!(Value::Object(args), json!({"workflowid": 12}));
        let set = route(Method::Put, "/system/options/{name}", Some("set"));
        let args = collect(
            set,
            &q(&[("name", "qorus.max-events")]),
            &[],
            Some(json!({"value": 5})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"name": "qorus.max-events", "value": "5"})
        );
        let logs = route(Method::Get, "/system/logs/{*source}", None);
        let args = collect(
            logs,
            &q(&[("source", "workflows/W")]),
            &q(&[("lines", "5")]),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"source": "workflows/W", "lines": 5})
        );
    }

    #[test]
    fn service_call_arguments() {
        let call = route(Method::Put, "/services/{name}/{method}", Some("call"));
        let path = q(&[("name", "S"), ("method", "echo")]);
        let args = collect(call, &path, &q(&[("args", "[1, \"a\"]")]), None).unwrap();
        assert_eq!(args["args"], json!([1, "a"]));
        let args = collect(call, &path, &q(&[("args", "hello"), ("args", "2")]), None).unwrap();
        assert_eq!(args["args"], json!(["hello", 2]));
        let args = collect(call, &path, &[], Some(json!({"args": {"x": 1}}))).unwrap();
        assert_eq!(args["args"], json!({"x": 1}));
    }
}

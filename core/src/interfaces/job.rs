//! `NAME-VERSION.qjob.yaml`: a job, its schedule and its code file.

use std::time::Duration;

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;

use super::code;
use super::yaml::{self, Ctx, Fields};
use super::JobDef;
use crate::schedule::{Cron, Schedule};

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
    "schedule",
    "recurring",
    "active",
    "run-skipped",
    "expiry-date",
    "groups",
    // Every Python job is class-based; the key says nothing Sluice needs to know.
    "class-based",
];
/// The cron fields of `schedule`, in [`Cron::parse`]'s order. All are required, as in Qorus.
const SCHEDULE_KEYS: [&str; 5] = ["minutes", "hours", "days", "months", "dow"];

const SUPPORTED_BASE_CLASS: &str = "QorusJob";

pub(super) fn parse(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<JobDef> {
    let fields = Fields::new(ctx, map, "job", KEYS);
    let name = fields.req_ident(ctx, "name");
    let version = fields.req_ident(ctx, "version");
    let desc = fields.opt_string(ctx, "desc").map(|(d, _)| d);
    let lang = code::lang(ctx, &fields);
    let base_class_name = code::base_class(ctx, &fields, SUPPORTED_BASE_CLASS);
    let class_name = fields.req_string(ctx, "class-name").map(|(c, _)| c);
    let code = code::code(ctx, &fields);
    let schedule = schedule(ctx, &fields);
    let flag = |ctx: &mut Ctx, key: &str, default: bool| match fields.get(key) {
        Some(_) => fields.opt_bool(ctx, key),
        None => Some(default),
    };
    let active = flag(ctx, "active", true);
    let run_skipped = flag(ctx, "run-skipped", false);
    let expiry_date = match fields.opt_string(ctx, "expiry-date") {
        Some((text, line)) => match parse_date(&text) {
            Some(ms) => Some(Some(ms)),
            None => {
                ctx.error(
                    line,
                    format!(
                        "key 'expiry-date': '{text}' is not a date; expected e.g. \
                         2027-01-01T00:00:00Z, 2027-01-01 00:00:00 (local time) or 2027-01-01"
                    ),
                );
                None
            }
        },
        // Absent, or present and malformed (reported).
        None => fields.get("expiry-date").is_none().then_some(None),
    };
    let groups = fields.string_list(ctx, "groups");
    Some(JobDef {
        origin: ctx.origin(fields.line()),
        name: name?,
        version: version?,
        desc,
        lang: lang?,
        base_class_name: base_class_name?,
        class_name: class_name?,
        code: code?,
        schedule: schedule?,
        active: active?,
        run_skipped: run_skipped?,
        expiry_date: expiry_date?,
        groups: groups?,
    })
}

/// Exactly one of `schedule` (cron fields) and `recurring` (seconds).
fn schedule(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<Schedule> {
    match (fields.get("schedule"), fields.get("recurring")) {
        (None, None) => {
            ctx.error(
                fields.line(),
                "job is missing required key 'schedule' (or 'recurring': a period in seconds)",
            );
            None
        }
        (Some(_), Some((line, _))) => {
            ctx.error(line, "a job has either 'schedule' or 'recurring', not both");
            None
        }
        (None, Some(_)) => fields
            .opt_int(ctx, "recurring", 1)
            .map(|secs| Schedule::Recurring(Duration::from_secs(secs.unsigned_abs()))),
        (Some((line, node)), None) => {
            let Node::Mapping(map) = node else {
                Fields::wrong_type(
                    ctx,
                    line,
                    "schedule",
                    "a mapping of minutes, hours, days, months and dow",
                    node,
                );
                return None;
            };
            cron(ctx, map).map(Schedule::Cron)
        }
    }
}

/// `schedule`'s five fields; every bad one is reported at its own line.
fn cron(ctx: &mut Ctx, map: &MarkedMappingNode) -> Option<Cron> {
    let fields = Fields::new(ctx, map, "schedule", &SCHEDULE_KEYS);
    let mut texts = Vec::new();
    let mut lines = Vec::new();
    for key in SCHEDULE_KEYS {
        let Some((line, node)) = fields.require(ctx, key) else {
            continue;
        };
        // A string, or an unquoted number (`minutes: 0`), kept as written.
        match yaml::scalar_text(node) {
            Some(text) => {
                texts.push(text.to_string());
                lines.push(line);
            }
            None => Fields::wrong_type(ctx, line, key, "a string or an integer", node),
        }
    }
    let texts: [String; 5] = texts.try_into().ok()?;
    match Cron::parse_reporting_all(texts.each_ref().map(String::as_str)) {
        Ok(cron) => Some(cron),
        Err(errors) => {
            for e in errors {
                let index = SCHEDULE_KEYS
                    .iter()
                    .position(|k| *k == e.field)
                    .unwrap_or(0);
                ctx.error(lines[index], format!("schedule: {e}"));
            }
            None
        }
    }
}

/// RFC 3339 (`2027-01-01T00:00:00Z`), or a local date and time (`2027-01-01 00:00:00`,
/// `2027-01-01T00:00`) or date (`2027-01-01`, midnight) in the system time zone: ms since
/// the epoch.
fn parse_date(text: &str) -> Option<i64> {
    use jiff::civil::{Date, DateTime};
    use jiff::Timestamp;
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts.as_millisecond());
    }
    let local = match text.parse::<DateTime>() {
        Ok(dt) => dt,
        Err(_) => text
            .parse::<Date>()
            .ok()?
            .to_datetime(jiff::civil::Time::midnight()),
    };
    let ts = jiff::tz::TimeZone::system()
        .to_ambiguous_timestamp(local)
        .compatible()
        .ok()?;
    Some(ts.as_millisecond())
}

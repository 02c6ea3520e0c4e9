//! When jobs run: Qorus's cron grammar (Vixie cron's) and fixed periods.
//!
//! A cron schedule has five fields, `minutes hours days months dow`. Each is a
//! comma-separated list of items; an item is `*`, a number or a range `a-b`, optionally
//! with a step: `*/n`, `a-b/n`, and `a/n` (from `a` to the field's maximum). Months may
//! be written `jan`..`dec` and days of the week `sun`..`sat` (any case, also in ranges);
//! day of week 0 and 7 are both Sunday.
//!
//! Days of the month and days of the week combine as in Vixie cron: when both fields are
//! restricted, a day matches if either matches; otherwise both must. A field is restricted
//! when it leaves out some value: `*/2` is (Vixie cron, which looks only for a leading `*`,
//! would say it is not), `*`, `*/1` and `1-31` are not.
//!
//! Schedules are evaluated in civil (wall-clock) time of a time zone. A time that does not
//! exist (skipped by a spring-forward change) never fires; a time that occurs twice (a
//! fall-back change) fires once, at its first occurrence.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How far ahead [`Cron::next_after`] looks before it gives up. Eight years, not five, so
/// that Feb 29 is found across a century year that is not a leap year (2096 -> 2104).
const SEARCH_DAYS: i64 = 8 * 366;

/// A cron schedule in Qorus's job grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The five fields as written.
    fields: [String; 5],
    /// Bit `m` set: minute `m` (0-59) matches.
    minutes: u64,
    /// Bit `h`: hour `h` (0-23).
    hours: u32,
    /// Bit `d`: day of the month `d` (1-31).
    days: u32,
    /// Bit `m`: month `m` (1-12).
    months: u16,
    /// Bit `d`: day of the week `d` (0-6, Sunday 0; a 7 written is stored as 0).
    dow: u8,
    /// The days field holds every day (unrestricted, for the days/dow rule).
    days_star: bool,
    /// The dow field holds every day of the week.
    dow_star: bool,
}

/// What is wrong with a cron expression, and in which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CronError {
    /// `"minutes"`, `"hours"`, `"days"`, `"months"` or `"dow"`; `"schedule"` when
    /// [`Cron::parse_line`] finds the wrong number of fields.
    pub field: &'static str,
    pub message: String,
}

/// One field's grammar: its name, range and the names it accepts.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ... (three-letter, lowercase).
    names: &'static [&'static str],
    /// What a bad token is not, for the error message.
    expected: &'static str,
}

const MINUTES: FieldSpec = FieldSpec {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    expected: "a number",
};
const HOURS: FieldSpec = FieldSpec {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    expected: "a number",
};
const DAYS: FieldSpec = FieldSpec {
    name: "days",
    min: 1,
    max: 31,
    names: &[],
    expected: "a number",
};
const MONTHS: FieldSpec = FieldSpec {
    name: "months",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    expected: "a number or month name",
};
const DOW: FieldSpec = FieldSpec {
    name: "dow",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    expected: "a number or day name",
};

impl FieldSpec {
    fn error(&self, message: String) -> CronError {
        CronError {
            field: self.name,
            message,
        }
    }

    /// A number or name in this field's range.
    fn value(&self, token: &str) -> Result<u32, CronError> {
        if token.is_empty() {
            return Err(self.error("a range or step is missing a number".to_string()));
        }
        if token.bytes().all(|b| b.is_ascii_digit()) {
            let out_of_range =
                || self.error(format!("{token} is out of range {}-{}", self.min, self.max));
            let n: u32 = token.parse().map_err(|_| out_of_range())?;
            if n < self.min || n > self.max {
                return Err(out_of_range());
            }
            return Ok(n);
        }
        let lower = token.to_ascii_lowercase();
        match self.names.iter().position(|name| *name == lower) {
            Some(i) => Ok(self.min + i as u32),
            None => Err(self.error(format!("'{token}' is not {}", self.expected))),
        }
    }

    /// The set of values a whole field matches, as bits.
    fn parse(&self, text: &str) -> Result<u64, CronError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(self.error("is empty".to_string()));
        }
        let items: Vec<&str> = text.split(',').collect();
        let mut bits = 0u64;
        for (i, item) in items.iter().enumerate() {
            let item = item.trim();
            if item.is_empty() {
                let message = if i + 1 == items.len() {
                    format!("trailing comma in '{text}'")
                } else {
                    format!("empty item in '{text}'")
                };
                return Err(self.error(message));
            }
            bits |= self.parse_item(item)?;
        }
        Ok(bits)
    }

    /// One item: `*`, `n`, `a-b`, each optionally with `/step`.
    fn parse_item(&self, item: &str) -> Result<u64, CronError> {
        let (range, step) = match item.split_once('/') {
            None => (item, None),
            Some((range, step)) => {
                if !step.bytes().all(|b| b.is_ascii_digit()) || step.is_empty() {
                    return Err(self.error(format!("step '{step}' in '{item}' is not a number")));
                }
                let step: u32 = step.parse().unwrap_or(u32::MAX);
                if step == 0 {
                    return Err(
                        self.error(format!("step 0 in '{item}': a step must be at least 1"))
                    );
                }
                (range, Some(step))
            }
        };
        let (low, high) = if range == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (self.value(a)?, self.value(b)?);
            if a > b {
                return Err(self.error(format!("range {range} is reversed ({a} > {b})")));
            }
            (a, b)
        } else {
            let a = self.value(range)?;
            // `a/n` runs from a to the field's maximum, as in Vixie cron.
            (a, if step.is_some() { self.max } else { a })
        };
        let step = step.unwrap_or(1);
        let mut bits = 0u64;
        let mut v = low;
        while v <= high {
            bits |= 1 << v;
            v = match v.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(bits)
    }
}

impl Cron {
    /// Parses the five fields of a cron schedule.
    pub fn parse(
        minutes: &str,
        hours: &str,
        days: &str,
        months: &str,
        dow: &str,
    ) -> Result<Cron, CronError> {
        Cron::parse_reporting_all([minutes, hours, days, months, dow])
            .map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`Cron::parse`], but with the error of every bad field (in field order), so
    /// the interface loader can report each at its own line.
    pub(crate) fn parse_reporting_all(fields: [&str; 5]) -> Result<Cron, Vec<CronError>> {
        let [minutes, hours, days, months, dow] = fields;
        let mut errors = Vec::new();
        let mut bits = |spec: &FieldSpec, text: &str| {
            spec.parse(text).unwrap_or_else(|e| {
                errors.push(e);
                0
            })
        };
        let minute_bits = bits(&MINUTES, minutes);
        let hour_bits = bits(&HOURS, hours);
        let day_bits = bits(&DAYS, days);
        let month_bits = bits(&MONTHS, months);
        let mut dow_bits = bits(&DOW, dow);
        // "Restricted" means not every value: `*/2` restricts the days as much as `1-31/2`
        // does (Vixie cron looks only at a leading `*`, a quirk the rule does not
        // have), while `*`, `*/1` and `1-31` do not.
        let all_days = bits(&DAYS, "*");
        let all_dow = bits(&DOW, "*");
        if !errors.is_empty() {
            return Err(errors);
        }
        if dow_bits & (1 << 7) != 0 {
            dow_bits = (dow_bits & !(1 << 7)) | 1;
        }
        Ok(Cron {
            fields: fields.map(|f| f.trim().to_string()),
            minutes: minute_bits,
            hours: hour_bits as u32,
            days: day_bits as u32,
            months: month_bits as u16,
            dow: dow_bits as u8,
            days_star: day_bits == all_days,
            dow_star: dow_bits & 0x7f == all_dow & 0x7f,
        })
    }

    /// Qorus's one-line form "MINUTES HOURS DAYS MONTHS DOW" (five fields separated by
    /// whitespace).
    pub fn parse_line(text: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields[..] {
            [minutes, hours, days, months, dow] => Cron::parse(minutes, hours, days, months, dow),
            _ => Err(CronError {
                field: "schedule",
                message: format!(
                    "expected 5 fields (MINUTES HOURS DAYS MONTHS DOW), found {} in '{}'",
                    fields.len(),
                    text.trim()
                ),
            }),
        }
    }

    /// The five fields as written (for storing in the jobs table and for display).
    pub fn fields(&self) -> [&str; 5] {
        [
            &self.fields[0],
            &self.fields[1],
            &self.fields[2],
            &self.fields[3],
            &self.fields[4],
        ]
    }

    /// Whether the schedule runs on this date (any time of day).
    fn matches_date(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let day = self.days & (1 << date.day()) != 0;
        let dow = self.dow & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.dow_star {
            day && dow
        } else {
            day || dow
        }
    }

    /// The first whole minute strictly after `after` that matches, in time zone `tz`;
    /// None if none within eight years (e.g. "30 of February").
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Walk civil (wall-clock) minutes from the one after `after`'s. Each matching one
        // is mapped back to an instant: a time in a gap has none and is skipped, a time in
        // a fold takes its first instant, and a first instant not after `after` (we are in
        // the second pass of a fold and it already fired) is skipped too.
        let local = tz.to_datetime(after);
        let start = local
            .date()
            .at(local.hour(), local.minute(), 0, 0)
            .checked_add(SignedDuration::from_mins(1))
            .ok()?;
        let mut date = start.date();
        let mut first_day = true;
        for _ in 0..SEARCH_DAYS {
            if self.matches_date(date) {
                let (from_hour, from_minute) = if first_day {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                if let Some(ts) = self.first_on(date, from_hour, from_minute, after, tz) {
                    return Some(ts);
                }
            }
            first_day = false;
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The first matching minute on `date` at or after `from_hour:from_minute` whose
    /// instant is after `after`.
    fn first_on(
        &self,
        date: Date,
        from_hour: i8,
        from_minute: i8,
        after: Timestamp,
        tz: &TimeZone,
    ) -> Option<Timestamp> {
        for hour in from_hour..24 {
            if self.hours & (1 << hour) == 0 {
                continue;
            }
            let minute_start = if hour == from_hour { from_minute } else { 0 };
            for minute in minute_start..60 {
                if self.minutes & (1 << minute) == 0 {
                    continue;
                }
                let dt: DateTime = date.at(hour, minute, 0, 0);
                let ambiguous = tz.to_ambiguous_timestamp(dt);
                if let jiff::tz::AmbiguousOffset::Gap { .. } = ambiguous.offset() {
                    continue;
                }
                match ambiguous.earlier() {
                    Ok(ts) if ts > after => return Some(ts),
                    _ => continue,
                }
            }
        }
        None
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.fields.join(" "))
    }
}

/// When a job runs: a cron schedule or every N seconds (`recurring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Cron(Cron),
    Recurring(Duration),
}

impl Schedule {
    /// Next trigger strictly after `after_ms` (ms since the epoch), cron evaluated in the
    /// system time zone; recurring: `after_ms` + period.
    pub fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Cron(cron) => {
                let after = Timestamp::from_millisecond(after_ms).ok()?;
                cron.next_after(after, &TimeZone::system())
                    .map(Timestamp::as_millisecond)
            }
            Schedule::Recurring(period) => {
                let period = i64::try_from(period.as_millis()).ok()?;
                after_ms.checked_add(period)
            }
        }
    }

    /// Next trigger strictly after `after`, cron evaluated in `tz`.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Cron(cron) => cron.next_after(after, tz),
            Schedule::Recurring(period) => {
                let period = SignedDuration::try_from(*period).ok()?;
                after.checked_add(period).ok()
            }
        }
    }

    /// "*/5 * * * *" or "every 10 s", for logs and listings.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron(cron) => cron.to_string(),
            Schedule::Recurring(period) => format!("every {} s", period.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cron(line: &str) -> Cron {
        Cron::parse_line(line).unwrap()
    }

    /// The next `n` triggers after `from`, in UTC.
    fn runs(line: &str, from: &str, n: usize) -> Vec<String> {
        let c = cron(line);
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = c.next_after(at, &TimeZone::UTC).unwrap();
            out.push(at.to_string());
        }
        out
    }

    fn err(line: &str) -> String {
        Cron::parse_line(line).unwrap_err().to_string()
    }

    #[test]
    fn every_minute_is_strictly_after_and_whole() {
        assert_eq!(
            runs("* * * * *", "2026-03-01T10:04:30.5Z", 2),
            ["2026-03-01T10:05:00Z", "2026-03-01T10:06:00Z"]
        );
        // Exactly on a matching minute: the next one, not the same.
        assert_eq!(
            runs("* * * * *", "2026-03-01T10:04:00Z", 1),
            ["2026-03-01T10:05:00Z"]
        );
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(
            runs("0,15,45 9 * * *", "2026-03-01T09:20:00Z", 3),
            [
                "2026-03-01T09:45:00Z",
                "2026-03-02T09:00:00Z",
                "2026-03-02T09:15:00Z"
            ]
        );
        assert_eq!(
            runs("*/20 * * * *", "2026-03-01T09:41:00Z", 2),
            ["2026-03-01T10:00:00Z", "2026-03-01T10:20:00Z"]
        );
        assert_eq!(
            runs("10-20/5 22-23 * * *", "2026-03-01T22:19:00Z", 4),
            [
                "2026-03-01T22:20:00Z",
                "2026-03-01T23:10:00Z",
                "2026-03-01T23:15:00Z",
                "2026-03-01T23:20:00Z"
            ]
        );
        // `a/n` runs from a to the maximum.
        assert_eq!(
            runs("50/4 0 * * *", "2026-03-01T00:00:00Z", 3),
            [
                "2026-03-01T00:50:00Z",
                "2026-03-01T00:54:00Z",
                "2026-03-01T00:58:00Z"
            ]
        );
        // Leading zeros and spaces around items (in the five-field form) are accepted.
        let c = Cron::parse(" 05 , 10", "*", "*", "*", "*").unwrap();
        assert_eq!(c.minutes, (1 << 5) | (1 << 10));
        assert_eq!(c.fields()[0], "05 , 10");
    }

    #[test]
    fn month_and_day_names() {
        assert_eq!(
            runs("0 12 1 MAR-may * ", "2026-01-15T00:00:00Z", 4),
            [
                "2026-03-01T12:00:00Z",
                "2026-04-01T12:00:00Z",
                "2026-05-01T12:00:00Z",
                "2027-03-01T12:00:00Z"
            ]
        );
        // 2026-03-02 is a Monday.
        assert_eq!(
            runs("0 8 * * Mon-wed,fri", "2026-03-01T00:00:00Z", 5),
            [
                "2026-03-02T08:00:00Z",
                "2026-03-03T08:00:00Z",
                "2026-03-04T08:00:00Z",
                "2026-03-06T08:00:00Z",
                "2026-03-09T08:00:00Z"
            ]
        );
        assert_eq!(
            cron("* * * jan/3 *").months,
            (1 << 1) | (1 << 4) | (1 << 7) | (1 << 10)
        );
    }

    #[test]
    fn dow_seven_is_sunday() {
        // 2026-03-01 is a Sunday.
        let sunday = ["2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z"];
        assert_eq!(runs("0 0 * * 7", "2026-03-01T00:00:00Z", 2), sunday);
        assert_eq!(runs("0 0 * * 0", "2026-03-01T00:00:00Z", 2), sunday);
        assert_eq!(runs("0 0 * * sun", "2026-03-01T00:00:00Z", 2), sunday);
        assert_eq!(
            runs("0 0 * * 6-7", "2026-03-01T00:00:00Z", 2),
            ["2026-03-07T00:00:00Z", "2026-03-08T00:00:00Z"]
        );
        assert_eq!(cron("* * * * 7").dow, cron("* * * * 0").dow);
        assert_eq!(cron("* * * * 5-7").dow, 0b110_0001);
    }

    #[test]
    fn days_and_dow_either_when_both_restricted() {
        // The 13th, or any Friday: 2026-03-06 and 13 are Fridays, so is the 20th.
        assert_eq!(
            runs("0 0 13 * fri", "2026-03-01T00:00:00Z", 4),
            [
                "2026-03-06T00:00:00Z",
                "2026-03-13T00:00:00Z",
                "2026-03-20T00:00:00Z",
                "2026-03-27T00:00:00Z"
            ]
        );
        assert_eq!(
            runs("0 0 10 * fri", "2026-03-07T00:00:00Z", 2),
            ["2026-03-10T00:00:00Z", "2026-03-13T00:00:00Z"]
        );
        // Only one restricted: that one decides.
        assert_eq!(
            runs("0 0 13 * *", "2026-03-01T00:00:00Z", 1),
            ["2026-03-13T00:00:00Z"]
        );
        assert_eq!(
            runs("0 0 * * fri", "2026-03-07T00:00:00Z", 1),
            ["2026-03-13T00:00:00Z"]
        );
        // `*/2` restricts the days (every other one), so either rule fires: odd days
        // or Fridays (Vixie cron would read a leading `*` as unrestricted).
        assert_eq!(
            runs("0 0 */2 * fri", "2026-03-01T00:00:00Z", 3),
            [
                "2026-03-03T00:00:00Z",
                "2026-03-05T00:00:00Z",
                "2026-03-06T00:00:00Z"
            ]
        );
        // A field that covers every value, however written, is not a restriction.
        assert_eq!(
            runs("0 0 */1 * fri", "2026-03-01T00:00:00Z", 2),
            ["2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z"]
        );
        assert_eq!(
            runs("0 0 1-31 * fri", "2026-03-01T00:00:00Z", 1),
            ["2026-03-06T00:00:00Z"]
        );
    }

    #[test]
    fn rollover_of_hour_day_month_and_year() {
        assert_eq!(
            runs("0 0 * * *", "2026-12-31T23:59:00Z", 1),
            ["2027-01-01T00:00:00Z"]
        );
        assert_eq!(
            runs("30 * * * *", "2026-04-30T23:45:00Z", 1),
            ["2026-05-01T00:30:00Z"]
        );
        // The 31st skips the months without one.
        assert_eq!(
            runs("0 0 31 * *", "2026-03-31T00:00:00Z", 2),
            ["2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z"]
        );
    }

    #[test]
    fn leap_day_and_impossible_dates() {
        assert_eq!(
            runs("0 0 29 feb *", "2026-01-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
        // 2100 is not a leap year: the search reaches 2104.
        assert_eq!(
            runs("0 0 29 2 *", "2096-03-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00Z"]
        );
        assert_eq!(
            cron("0 0 30 feb *").next_after(utc("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
        assert_eq!(
            cron("0 0 31 4,6,9,11 *").next_after(utc("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
        // ... but the OR rule makes Feb 30 or a Monday in February possible.
        assert_eq!(
            runs("0 0 30 feb mon", "2026-01-01T00:00:00Z", 1),
            ["2026-02-02T00:00:00Z"]
        );
    }

    #[test]
    fn dst_transitions_in_a_named_zone() {
        let tz = match TimeZone::get("Europe/Prague") {
            Ok(tz) => tz,
            Err(e) => {
                println!("skipped: time zone Europe/Prague is not available: {e}");
                return;
            }
        };
        let next = |line: &str, from: &str| {
            cron(line)
                .next_after(utc(from), &tz)
                .unwrap()
                .to_zoned(tz.clone())
                .to_string()
        };
        // Spring forward on 2026-03-29: 02:00 CET becomes 03:00 CEST, so 02:30 does not
        // exist that day and the job runs the next day.
        assert_eq!(
            next("30 2 * * *", "2026-03-28T12:00:00Z"),
            "2026-03-30T02:30:00+02:00[Europe/Prague]"
        );
        // Every-minute schedules step over the gap.
        assert_eq!(
            next("* * * * *", "2026-03-29T00:59:00Z"),
            "2026-03-29T03:00:00+02:00[Europe/Prague]"
        );
        // Fall back on 2026-10-25: 03:00 CEST becomes 02:00 CET and 02:30 happens twice;
        // it runs once, at the first (CEST).
        assert_eq!(
            next("30 2 * * *", "2026-10-24T12:00:00Z"),
            "2026-10-25T02:30:00+02:00[Europe/Prague]"
        );
        // After the first 02:30, the next run is the following day, not the second 02:30.
        assert_eq!(
            next("30 2 * * *", "2026-10-25T00:30:00Z"),
            "2026-10-26T02:30:00+01:00[Europe/Prague]"
        );
        // From inside the repeated hour (02:10 CET), the 02:xx minutes already ran.
        assert_eq!(
            next("*/20 2,3 * * *", "2026-10-25T01:10:00Z"),
            "2026-10-25T03:00:00+01:00[Europe/Prague]"
        );
        // Within the first pass, minutes continue normally.
        assert_eq!(
            next("*/20 2,3 * * *", "2026-10-25T00:10:00Z"),
            "2026-10-25T02:20:00+02:00[Europe/Prague]"
        );
    }

    #[test]
    fn schedule_next_and_describe() {
        let every = Schedule::Recurring(Duration::from_secs(10));
        assert_eq!(every.next_after_ms(1_000), Some(11_000));
        assert_eq!(
            every.next_after(utc("2026-03-01T00:00:00Z"), &TimeZone::UTC),
            Some(utc("2026-03-01T00:00:10Z"))
        );
        assert_eq!(every.describe(), "every 10 s");
        let five = Schedule::Cron(Cron::parse("*/5", "*", "*", "*", "*").unwrap());
        assert_eq!(five.describe(), "*/5 * * * *");
        // Every time zone's offset is a whole number of minutes today, so every-5-minutes
        // lands on a multiple of 5 minutes in UTC too.
        let after = utc("2026-03-01T10:02:00Z").as_millisecond();
        assert_eq!(
            five.next_after_ms(after),
            Some(utc("2026-03-01T10:05:00Z").as_millisecond())
        );
        assert_eq!(cron("1 2 3 4 5").fields(), ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn bad_expressions_name_the_field_and_the_problem() {
        assert_eq!(err("61 * * * *"), "minutes: 61 is out of range 0-59");
        assert_eq!(err("* 24 * * *"), "hours: 24 is out of range 0-23");
        assert_eq!(err("* * 0 * *"), "days: 0 is out of range 1-31");
        assert_eq!(err("* * 32 * *"), "days: 32 is out of range 1-31");
        assert_eq!(err("* * * 13 *"), "months: 13 is out of range 1-12");
        assert_eq!(err("* * * * 8"), "dow: 8 is out of range 0-7");
        assert_eq!(
            err("* * * * 99999999999"),
            "dow: 99999999999 is out of range 0-7"
        );
        assert_eq!(
            err("* * * * funday"),
            "dow: 'funday' is not a number or day name"
        );
        assert_eq!(
            err("* * * foo *"),
            "months: 'foo' is not a number or month name"
        );
        assert_eq!(err("x * * * *"), "minutes: 'x' is not a number");
        assert_eq!(
            err("-1 * * * *"),
            "minutes: a range or step is missing a number"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "minutes: step 0 in '*/0': a step must be at least 1"
        );
        assert_eq!(
            err("*/x * * * *"),
            "minutes: step 'x' in '*/x' is not a number"
        );
        assert_eq!(err("* */ * * *"), "hours: step '' in '*/' is not a number");
        assert_eq!(
            err("10-5 * * * *"),
            "minutes: range 10-5 is reversed (10 > 5)"
        );
        assert_eq!(
            err("* * * dec-jan *"),
            "months: range dec-jan is reversed (12 > 1)"
        );
        assert_eq!(err("1,2, * * * *"), "minutes: trailing comma in '1,2,'");
        assert_eq!(err("1,,2 * * * *"), "minutes: empty item in '1,,2'");
        assert_eq!(
            Cron::parse("*", "", "*", "*", "*").unwrap_err(),
            CronError {
                field: "hours",
                message: "is empty".to_string()
            }
        );
        assert_eq!(
            err("* * * *"),
            "schedule: expected 5 fields (MINUTES HOURS DAYS MONTHS DOW), found 4 in '* * * *'"
        );
        let all = Cron::parse_reporting_all(["61", "*", "0", "*", "x"]).unwrap_err();
        let fields: Vec<_> = all.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["minutes", "days", "dow"]);
        assert_eq!(
            err("* * * * * *"),
            "schedule: expected 5 fields (MINUTES HOURS DAYS MONTHS DOW), found 6 in '* * * * * *'"
        );
        assert_eq!(
            err(""),
            "schedule: expected 5 fields (MINUTES HOURS DAYS MONTHS DOW), found 0 in ''"
        );
    }
}

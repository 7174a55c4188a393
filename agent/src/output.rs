//! Human text versus `--json`: every command builds its JSON value, and prints either it
//! or its text.

use serde::Serialize;

pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("[x] cannot encode output: {err}"),
    }
}

/// "Expires in 7 days (Mon Jan 15 2024 10:30:00 GMT)".
pub fn expires_line(at: time::OffsetDateTime, now: time::OffsetDateTime) -> String {
    format!("Expires in {} ({})", remaining(at - now), gmt(at))
}

pub fn remaining(left: time::Duration) -> String {
    let secs = left.whole_seconds().max(0);
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        s if s < 60 => plural(s, "second"),
        s if s < 3600 => plural((s + 59) / 60, "minute"),
        s if s < 86_400 => plural((s + 1800) / 3600, "hour"),
        s => plural((s + 43_200) / 86_400, "day"),
    }
}

/// Short form for lists: 22h, 6d, 45m.
pub fn short(left: time::Duration) -> String {
    let secs = left.whole_seconds().max(0);
    match secs {
        s if s < 3600 => format!("{}m", (s + 59) / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn gmt(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
}

pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// A message with its first letter upper-cased, as error lines start.
pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

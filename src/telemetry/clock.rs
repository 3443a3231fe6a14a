//! Time as the usage log writes it: UTC, RFC 3339 with milliseconds
//! (`2026-05-01T12:00:00.123Z`), so that text order is time order and a line's day is its
//! first ten characters; and `--since` arguments (`1d`, `7d`, `12h`, `2026-05-01`).

use std::time::SystemTime;

/// The timestamp of now.
pub fn now_ts() -> String {
    ts_of(SystemTime::now())
}

pub fn ts_of(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Today's UTC day, `YYYY-MM-DD`.
pub fn today() -> String {
    day_of_time(SystemTime::now())
}

pub fn day_of_time(t: SystemTime) -> String {
    let mut ts = ts_of(t);
    ts.truncate(10);
    ts
}

/// A timestamp as part of a file name: digits and `T`/`Z` only.
pub fn compact(ts: &str) -> String {
    ts.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// The earliest timestamp a `--since` argument lets in, as `now` sees it: a span back from
/// now (`1d`, `7d`, `12h`, `30m`, anything humantime reads) or a UTC date (`2026-05-01`) or
/// time (`2026-05-01T08:00:00Z`).
pub fn since(arg: &str, now: SystemTime) -> Result<String, String> {
    let arg = arg.trim();
    if let Ok(span) = humantime::parse_duration(arg) {
        let from = now.checked_sub(span).unwrap_or(SystemTime::UNIX_EPOCH);
        return Ok(ts_of(from));
    }
    let full = if arg.len() == 10 {
        format!("{arg}T00:00:00Z")
    } else {
        arg.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(ts_of)
        .map_err(|_| {
            format!("--since wants a span back from now (1d, 7d, 12h) or a UTC date (2026-05-01), got {arg:?}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_arguments() {
        let now = humantime::parse_rfc3339("2026-05-08T12:00:00Z").unwrap();
        let cases = [
            ("1d", Ok("2026-05-07T12:00:00.000Z")),
            ("7d", Ok("2026-05-01T12:00:00.000Z")),
            ("12h", Ok("2026-05-08T00:00:00.000Z")),
            ("2026-05-01", Ok("2026-05-01T00:00:00.000Z")),
            ("2026-05-01T08:30:00Z", Ok("2026-05-01T08:30:00.000Z")),
            ("yesterday", Err(())),
            ("2026-13-01", Err(())),
        ];
        for (arg, want) in cases {
            let got = since(arg, now);
            match want {
                Ok(ts) => assert_eq!(got.as_deref(), Ok(ts), "{arg}"),
                Err(()) => assert!(got.is_err(), "{arg}: {got:?}"),
            }
        }
    }

    #[test]
    fn days_and_names() {
        let t = humantime::parse_rfc3339("2026-05-08T23:59:59.999Z").unwrap();
        assert_eq!(day_of_time(t), "2026-05-08");
        assert_eq!(ts_of(t), "2026-05-08T23:59:59.999Z");
        assert_eq!(compact("2026-05-08T23:59:59.999Z"), "20260508T235959999Z");
    }
}

//! Run log times as `runlog_store.ops.runs.parse_time` reads them: what `datetime.fromisoformat`
//! makes of the text, an aware time converted to local naive time (runnable writes naive local
//! times, `str(datetime.now())`).
//!
//! The forms runnable and the models write are read here: `YYYY-MM-DD`, then `HH:MM`,
//! `HH:MM:SS` or `HH:MM:SS.f` (1 to 6 digits) after a space or a `T`, then optionally `Z` or
//! `±HH:MM`. Python's `fromisoformat` reads more (week dates, `HHMMSS`, a comma, any separator
//! character, offsets with seconds...): such text is handed back as [`Time::Other`] for Python
//! to judge, so the summary never disagrees with Python about a time.

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime};

/// What a run log's time text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Time {
    /// Not a time for Python either (`fromisoformat` refuses it): left out.
    Invalid,
    /// A naive local time.
    At(NaiveDateTime),
    /// A form this reader leaves to Python.
    Other,
}

/// Read a run log time (see the module's documentation).
pub fn parse_time(text: &str) -> Time {
    let b = text.as_bytes();
    // Every form fromisoformat reads starts with a four-digit year and has seven characters
    // at least (`YYYYWww`): anything else is no time, without asking Python.
    if b.len() < 7 || !b[..4].iter().all(u8::is_ascii_digit) {
        return Time::Invalid;
    }
    // Not ASCII: fromisoformat reads a few such forms (a separator character); Python says.
    if !text.is_ascii() {
        return Time::Other;
    }
    let digits = |from: usize, n: usize| -> Option<u32> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (digits(0, 4), digits(5, 2), digits(8, 2)) else {
        return Time::Other;
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Time::Other;
    }
    let Some(date) = NaiveDate::from_ymd_opt(year as i32, month, day) else {
        // fromisoformat refuses a date out of range (Feb 30, month 13) too.
        return Time::Invalid;
    };
    if year == 0 {
        // Python's dates start at year 1.
        return Time::Invalid;
    }
    if b.len() == 10 {
        return Time::At(date.and_time(NaiveTime::MIN));
    }
    if !matches!(b[10], b' ' | b'T') {
        return Time::Other;
    }
    // HH:MM
    let (Some(hour), Some(minute)) = (digits(11, 2), digits(14, 2)) else {
        return Time::Other;
    };
    if b.get(13) != Some(&b':') {
        return Time::Other;
    }
    let mut at = 16;
    let mut second = 0;
    let mut micro = 0;
    if b.get(at) == Some(&b':') {
        let Some(s) = digits(at + 1, 2) else {
            return Time::Other;
        };
        second = s;
        at += 3;
        if b.get(at) == Some(&b'.') {
            let start = at + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let n = end - start;
            if n == 0 || n > 6 {
                return Time::Other;
            }
            let fraction = digits(start, n).unwrap_or(0);
            micro = fraction * 10u32.pow(6 - n as u32);
            at = end;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Time::Invalid;
    }
    let Some(time) = NaiveTime::from_hms_micro_opt(hour, minute, second, micro) else {
        return Time::Invalid;
    };
    let naive = date.and_time(time);
    let rest = &b[at..];
    let offset_seconds = match rest {
        [] => return Time::At(naive),
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
        {
            let hours = i32::from(h1 - b'0') * 10 + i32::from(h2 - b'0');
            let minutes = i32::from(m1 - b'0') * 10 + i32::from(m2 - b'0');
            if hours > 23 || minutes > 59 {
                return Time::Other;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return Time::Other,
    };
    let Some(offset) = FixedOffset::east_opt(offset_seconds) else {
        return Time::Other;
    };
    let Some(aware) = naive.and_local_timezone(offset).single() else {
        return Time::Other;
    };
    local_naive(aware)
}

/// `aware.astimezone().replace(tzinfo=None)`: the local wall time of that instant.
fn local_naive(aware: DateTime<FixedOffset>) -> Time {
    Time::At(aware.with_timezone(&Local).naive_local())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn the_forms_runnable_writes_are_read() {
        assert_eq!(
            parse_time("2026-01-01 10:00:00.123456"),
            Time::At(at("2026-01-01 10:00:00.123456"))
        );
        assert_eq!(
            parse_time("2026-01-01T10:00:05"),
            Time::At(at("2026-01-01 10:00:05"))
        );
        assert_eq!(
            parse_time("2026-01-01 10:00:00.1"),
            Time::At(at("2026-01-01 10:00:00.1"))
        );
        assert_eq!(
            parse_time("2026-01-01 10:00"),
            Time::At(at("2026-01-01 10:00:00"))
        );
        assert_eq!(
            parse_time("2026-01-01"),
            Time::At(at("2026-01-01 00:00:00"))
        );
    }

    #[test]
    fn what_python_refuses_is_no_time_and_the_rest_is_left_to_python() {
        for text in [
            "",
            "not a time",
            "2026-1",
            "2026-02-30",
            "2026-01-01 24:00:00",
            "2026-01-01 10:00:60",
            " 2026-01-01",
        ] {
            assert_eq!(parse_time(text), Time::Invalid, "{text}");
        }
        for text in [
            "2026-01-01 10",
            "2026-01-01x10:00",
            "20260101",
            "2026-01-01 10:00:00,5",
            "2026-01-01 10:00:00.1234567",
            "2026-01-01 10:00:00+0100",
            "2026-01-01 10:00:00 ",
            "2026W011",
        ] {
            assert_eq!(parse_time(text), Time::Other, "{text}");
        }
    }

    #[test]
    fn aware_times_are_local_wall_times() {
        let Time::At(utc) = parse_time("2026-06-01 10:00:00Z") else {
            panic!()
        };
        let Time::At(plus_two) = parse_time("2026-06-01 12:00:00+02:00") else {
            panic!()
        };
        assert_eq!(utc, plus_two);
        let expected = at("2026-06-01 10:00:00")
            .and_utc()
            .with_timezone(&Local)
            .naive_local();
        assert_eq!(utc, expected);
    }
}

//! Timestamps for people: µs since the epoch shown in local time (or UTC), and `--since` values
//! parsed from either a relative age (`90s`, `15m`, `1h`, `2d`) or a date-time.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `2026-11-21 05:10:53` in local time, or `2026-11-21 05:10:53Z` in UTC.
pub fn format_usec(usec: u64, utc: bool) -> String {
    let seconds = (usec / 1_000_000) as libc::time_t;
    // SAFETY: `libc::tm` is a plain C struct for which all-zero bytes are valid; it is filled in
    // by the call below.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; the *_r variants keep no state between calls.
    let filled = unsafe {
        if utc {
            libc::gmtime_r(&seconds, &mut tm)
        } else {
            libc::localtime_r(&seconds, &mut tm)
        }
    };
    if filled.is_null() {
        return format!("@{usec}");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if utc { "Z" } else { "" }
    )
}

/// µs since the epoch for a `--since` value: an age (`30s`, `15m`, `1h`, `2d`, `1w`) before
/// `now_usec`, `@USEC`, or `YYYY-MM-DD[ HH:MM[:SS]]` in local time (UTC with `utc`).
pub fn parse_since(value: &str, now_usec: u64, utc: bool) -> Result<u64, String> {
    let value = value.trim();
    if let Some(usec) = value.strip_prefix('@') {
        return usec
            .parse()
            .map_err(|_| format!("{value:?}: @ must be followed by µs since the epoch"));
    }
    let unit = value.chars().last().unwrap_or(' ');
    let factor = match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        'w' => Some(7 * 86_400),
        _ => None,
    };
    if let Some(factor) = factor {
        if let Ok(n) = value[..value.len() - 1].parse::<u64>() {
            return Ok(now_usec.saturating_sub(n * factor * 1_000_000));
        }
    }
    parse_datetime(value, utc).ok_or_else(|| {
        format!(
            "{value:?}: expected an age such as 30s, 15m, 1h, 2d, a date such as 2026-11-21 or \
             2026-11-21 05:00[:00], or @USEC"
        )
    })
}

fn parse_datetime(value: &str, utc: bool) -> Option<u64> {
    let (date, time) = match value.split_once([' ', 'T']) {
        Some((d, t)) => (d, t),
        None => (value, "00:00:00"),
    };
    let numbers = |s: &str, sep: char| -> Option<Vec<i32>> {
        s.split(sep).map(|p| p.parse::<i32>().ok()).collect()
    };
    let d = numbers(date, '-')?;
    let t = numbers(time, ':')?;
    if d.len() != 3 || !(2..=3).contains(&t.len()) {
        return None;
    }
    // SAFETY: `libc::tm` is a plain C struct for which all-zero bytes are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = d[0] - 1900;
    tm.tm_mon = d[1] - 1;
    tm.tm_mday = d[2];
    tm.tm_hour = t[0];
    tm.tm_min = t[1];
    tm.tm_sec = t.get(2).copied().unwrap_or(0);
    tm.tm_isdst = -1;
    if !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) || t[0] > 23 || t[1] > 59 {
        return None;
    }
    // SAFETY: `tm` is a live, initialised local; timegm/mktime only read and normalise it.
    let seconds = unsafe {
        if utc {
            libc::timegm(&mut tm)
        } else {
            libc::mktime(&mut tm)
        }
    };
    (seconds >= 0).then(|| seconds as u64 * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_dates_and_raw_values_parse() {
        let now = 1_000_000_000_000_000;
        assert_eq!(parse_since("1h", now, true), Ok(now - 3_600_000_000));
        assert_eq!(parse_since("2d", now, true), Ok(now - 172_800_000_000));
        assert_eq!(parse_since("@42", now, true), Ok(42));
        assert_eq!(
            parse_since("2026-11-21 05:10:53", now, true),
            Ok(1_795_237_853_000_000)
        );
        assert_eq!(
            parse_since("2026-11-21", now, true),
            Ok(1_795_219_200_000_000)
        );
        assert!(parse_since("yesterday", now, true)
            .unwrap_err()
            .contains("expected an age"));
        assert_eq!(
            format_usec(1_795_237_853_000_000, true),
            "2026-11-21 05:10:53Z"
        );
    }
}

//! How values go into MySQL columns: [`Cell`], a converted value ready to bind, how a TIMESTAMP
//! is sent ([`TimestampAs`]), and the UTC date/time text of TIMESTAMP values.

/// One converted value, ready to bind.
#[derive(Debug, Clone)]
pub(super) enum Cell {
    Null,
    Int(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Text(String),
}

impl Cell {
    pub(super) fn size(&self) -> usize {
        match self {
            Cell::Text(s) => s.len() + 4,
            _ => 9,
        }
    }
}

/// How a TIMESTAMP field is sent to its column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TimestampAs {
    Number,
    DateTime,
    Date,
}

/// Splits microseconds since the Unix epoch into (year, month, day, hour, min, sec, micros), UTC.
fn civil_from_micros(us: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = us.div_euclid(86_400_000_000);
    let rem = us.rem_euclid(86_400_000_000);
    let (secs, micros) = (rem / 1_000_000, (rem % 1_000_000) as u32);
    // Howard Hinnant's days → civil date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = secs as u32;
    (
        year,
        month,
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        micros,
    )
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) for microseconds since the epoch: a literal both MySQL
/// (`DATETIME(6)`, `TIMESTAMP(6)` with session time zone +00:00) and PostgreSQL read exactly.
/// Written digit by digit: it runs once per TIMESTAMP value on a sink's hot path, where `format!`
/// showed up in profiles.
pub(super) fn datetime_text(us: i64) -> String {
    let (y, mo, d, h, mi, s, f) = civil_from_micros(us);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{f:06}");
    }
    let mut out = String::with_capacity(26);
    push_date(&mut out, y as u32, mo, d);
    out.push(' ');
    push_digits(&mut out, h, 2);
    out.push(':');
    push_digits(&mut out, mi, 2);
    out.push(':');
    push_digits(&mut out, s, 2);
    out.push('.');
    push_digits(&mut out, f, 6);
    out
}

/// `YYYY-MM-DD` (UTC) for microseconds since the epoch.
pub(super) fn date_text(us: i64) -> String {
    let (y, mo, d, ..) = civil_from_micros(us);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{mo:02}-{d:02}");
    }
    let mut out = String::with_capacity(10);
    push_date(&mut out, y as u32, mo, d);
    out
}

fn push_date(out: &mut String, y: u32, mo: u32, d: u32) {
    push_digits(out, y, 4);
    out.push('-');
    push_digits(out, mo, 2);
    out.push('-');
    push_digits(out, d, 2);
}

/// Appends the last `width` decimal digits of `v`, zero-padded.
fn push_digits(out: &mut String, v: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (v / 10u32.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_text_is_utc_with_micros() {
        assert_eq!(datetime_text(0), "1970-01-01 00:00:00.000000");
        assert_eq!(datetime_text(1), "1970-01-01 00:00:00.000001");
        assert_eq!(datetime_text(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(
            datetime_text(1_700_000_000_123_456),
            "2023-11-14 22:13:20.123456"
        );
        assert_eq!(
            datetime_text(951_782_400_000_000),
            "2000-02-29 00:00:00.000000"
        );
        assert_eq!(
            datetime_text(253_402_300_799_999_999),
            "9999-12-31 23:59:59.999999"
        );
        assert_eq!(
            datetime_text(-62_135_596_800_000_000),
            "0001-01-01 00:00:00.000000"
        );
        assert_eq!(date_text(1_700_000_000_123_456), "2023-11-14");
        assert_eq!(date_text(-62_135_596_800_000_000), "0001-01-01");
        // outside years 0..=9999 the text keeps its sign and width (the database refuses it)
        assert_eq!(
            datetime_text(-62_200_000_000_000_000),
            "-002-12-17 14:13:20.000000"
        );
        assert_eq!(date_text(253_402_300_800_000_000), "10000-01-01");
    }

    #[test]
    fn fast_text_matches_format_for_every_day_of_a_long_range() {
        // one instant a day (with a varying time of day) from 1600 to 2400
        let day = 86_400_000_000i64;
        let mut us = -11_676_096_000_000_000i64;
        while us < 13_569_465_600_000_000 {
            let t = us + (us / day).rem_euclid(86_399) * 1_000_003;
            let (y, mo, d, h, mi, s, f) = civil_from_micros(t);
            let want = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{f:06}");
            assert_eq!(datetime_text(t), want);
            assert_eq!(date_text(t), want[..10]);
            us += day;
        }
    }
}

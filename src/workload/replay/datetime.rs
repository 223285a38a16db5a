//! Azure's `TIMESTAMP` cells (`2023-11-16 18:15:46.6805900`) as seconds, parsed by hand: the
//! proleptic Gregorian calendar in UTC, days counted with Howard Hinnant's `days_from_civil`.

/// Seconds since 1970-01-01 00:00:00 of a `YYYY-MM-DD HH:MM:SS[.fraction]` cell (a `T` may
/// separate date and time), as whole seconds and the fraction; `None` when the cell is not one.
pub fn parse(cell: &str) -> Option<(i64, f64)> {
    let (date, time) = cell.split_once([' ', 'T'])?;
    let mut date = date.splitn(3, '-');
    let year: i64 = whole(date.next()?, 4)?;
    let month: i64 = whole(date.next()?, 2)?;
    let day: i64 = whole(date.next()?, 2)?;
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (clock, format!("0.{digits}").parse::<f64>().ok()?)
        }
        Some(_) => return None,
        None => (time, 0.0),
    };
    let mut clock = clock.splitn(3, ':');
    let hour: i64 = whole(clock.next()?, 2)?;
    let minute: i64 = whole(clock.next()?, 2)?;
    let second: i64 = whole(clock.next()?, 2)?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    valid.then(|| {
        let days = days_from_civil(year, month, day);
        (
            days * 86_400 + hour * 3_600 + minute * 60 + second,
            fraction,
        )
    })
}

/// `text` as a number of exactly `digits` ASCII digits.
fn whole(text: &str, digits: usize) -> Option<i64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days in `month` of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-month-day`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn known_instants() {
        assert_eq!(parse("1970-01-01 00:00:00"), Some((0, 0.0)));
        // 2023-11-16 is day 19,677 since the epoch (date -u -d 2023-11-16 +%s = 1700092800).
        let (s, f) = parse("2023-11-16 18:15:46.6805900").unwrap();
        assert_eq!(s, 1_700_092_800 + 18 * 3600 + 15 * 60 + 46);
        assert!((f - 0.68059).abs() < 1e-12);
        // 2024-02-29 exists (leap year), 2023-02-29 does not.
        assert_eq!(
            parse("2024-03-01 00:00:00").unwrap().0 - parse("2024-02-29 00:00:00").unwrap().0,
            86_400
        );
        assert_eq!(parse("2023-02-29 00:00:00"), None);
        for bad in [
            "",
            "2023-11-16",
            "2023-11-16 18:15",
            "2023-13-01 00:00:00",
            "2023-11-16 18:15:46.",
            "2023-11-16 18:15:46.5x",
            "23-11-16 18:15:46",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

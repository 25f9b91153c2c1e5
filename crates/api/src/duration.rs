//! Durations as people type them: `30d`, `12h`, `90m`, `45s`, or plain seconds.

use time::Duration;

/// The longest duration accepted: a hundred years. Anything longer is a typo, and would
/// overflow the arithmetic of the times it is added to.
pub const MAX: Duration = Duration::days(36_500);

/// Reads `30d`, `12h`, `90m`, `45s` or plain seconds; refuses negative, malformed and
/// longer-than-[`MAX`] values with a message saying which.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let bad = || format!("{text:?} is not a duration such as 30d, 12h, 90m, 45s or 3600");
    let seconds_per = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = n
        .checked_mul(seconds_per)
        .and_then(|s| i64::try_from(s).ok())
        .filter(|s| *s <= MAX.whole_seconds())
        .ok_or_else(|| format!("{text:?} is longer than the longest duration accepted (36500d)"))?;
    Ok(Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_people_type_them() {
        assert_eq!(parse("30d"), Ok(Duration::days(30)));
        assert_eq!(parse("3600"), Ok(Duration::hours(1)));
        assert_eq!(parse(" 90m "), Ok(Duration::minutes(90)));
        assert!(parse("3w").unwrap_err().contains("not a duration"));
        assert!(parse("-5d").is_err());
        assert!(parse("").is_err());
        assert!(parse("999999999999999d").unwrap_err().contains("longer"));
        assert!(
            parse(&format!("{}s", i64::MAX))
                .unwrap_err()
                .contains("longer")
        );
        assert!(parse("18446744073709551616").is_err());
        assert_eq!(parse("36500d"), Ok(MAX));
    }
}

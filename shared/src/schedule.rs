//! Time arithmetic of the settings: durations, the confirmation schedule
//! (`ENVSHARE_CONFIRM_SCHEDULE`) and the daily quota reset in China Standard Time
//! (`ENVSHARE_QUOTA_RESET`). Pure values, no I/O, so both the settings and the services above
//! them can use them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Asia/Shanghai is UTC+8 all year (no daylight saving time since 1991), in milliseconds.
pub const SHANGHAI_OFFSET_MS: u64 = 8 * 3_600_000;

const DAY_MS: i64 = 86_400_000;

/// The end of a pause that lasts until it is lifted (`envshare pause` without `--for`):
/// 9999-12-31T23:59:59.999Z, later than any pause with an end, and exact as a Lua number
/// (below 2^53) in the scripts that compare pause ends.
pub const PAUSE_UNTIL_RESUMED_MS: u64 = 253_402_300_799_999;
const _: () = assert!(PAUSE_UNTIL_RESUMED_MS < 1 << 53, "Lua numbers are doubles");

/// The longest pause reason an operator may give (`envshare pause --reason`, the console).
pub const MAX_PAUSE_REASON_LEN: usize = 500;

/// The end of a pause starting at `now_ms` that lasts `length` (`None`: until resumed), never
/// past [`PAUSE_UNTIL_RESUMED_MS`].
pub fn pause_end(now_ms: u64, length: Option<Duration>) -> u64 {
    match length {
        None => PAUSE_UNTIL_RESUMED_MS,
        Some(d) => now_ms
            .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .min(PAUSE_UNTIL_RESUMED_MS),
    }
}

/// Whether `reason` (trimmed) can be stored as a pause reason: one line of at most
/// [`MAX_PAUSE_REASON_LEN`] characters without control characters.
pub fn pause_reason_ok(reason: &str) -> bool {
    reason.chars().count() <= MAX_PAUSE_REASON_LEN && !reason.chars().any(char::is_control)
}

/// Appids per `batchgetenvid` call by default (`ENVSHARE_CONFIRM_BATCH`).
pub const DEFAULT_CONFIRM_BATCH: usize = 100;

/// Parses a duration: a number and a unit, `100ms`, `60s`, `5m`, `1h`, `7d`; also anything else
/// `humantime` reads (`1h 30m`, `1.5h`), as long as it is whole milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    let s = s.trim();
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a duration needs a unit (ms, s, m, h or d)");
    }
    let d = humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => "duration too large",
        humantime::DurationError::UnknownUnit { .. } => "unknown unit: use ms, s, m, h or d",
        humantime::DurationError::Empty => "a duration needs a unit (ms, s, m, h or d)",
        _ => "a duration starts with a whole number",
    })?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err("a duration is whole milliseconds");
    }
    if u64::try_from(d.as_millis()).is_err() {
        return Err("duration too large");
    }
    Ok(d)
}

/// Offsets from a share's acceptance at which `batchgetenvid` is asked whether the binding is
/// confirmed, and the interval the checks repeat at after the last offset.
///
/// Written `60s,5m,15m,1h,every 6h` (the default): checks 1 min, 5 min, 15 min and 1 h after
/// acceptance, then every 6 h. Units: `ms`, `s`, `m`, `h`, `d`. Offsets must increase. Without an
/// `every` item the last gap repeats (`100ms,200ms` checks at 100, 200, 300 ms, …).
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmSchedule {
    offsets: Vec<u64>,
    every: u64,
}

impl Default for ConfirmSchedule {
    fn default() -> Self {
        Self {
            offsets: vec![60_000, 300_000, 900_000, 3_600_000],
            every: 6 * 3_600_000,
        }
    }
}

fn fmt_ms(ms: u64) -> String {
    for (unit, scale) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= scale && ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

impl ConfirmSchedule {
    /// Parses the setting's syntax (see the type's docs).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let mut offsets = Vec::new();
        let mut every = None;
        let items: Vec<&str> = s.split(',').map(str::trim).collect();
        for (i, item) in items.iter().enumerate() {
            if let Some(rest) = item.strip_prefix("every") {
                if i + 1 != items.len() {
                    return Err("`every DURATION` must be the last item");
                }
                every = Some(parse_duration(rest)?.as_millis() as u64);
                continue;
            }
            let ms = parse_duration(item)?.as_millis() as u64;
            if ms == 0 {
                return Err("an offset must be above zero");
            }
            if offsets.last().is_some_and(|&last| ms <= last) {
                return Err("offsets must increase");
            }
            offsets.push(ms);
        }
        let Some(&last) = offsets.last() else {
            return Err("at least one offset is needed");
        };
        let every = match every {
            Some(0) => return Err("the `every` interval must be above zero"),
            Some(e) => e,
            None => last - offsets.len().checked_sub(2).map_or(0, |i| offsets[i]),
        };
        Ok(Self { offsets, every })
    }

    /// The first check's offset from acceptance (ms).
    pub fn first_ms(&self) -> u64 {
        self.offsets[0]
    }

    /// The first check's offset from acceptance within a confirmation `window`: the window's
    /// end when it is shorter (the last check always falls on it).
    pub fn first_within(&self, window: Duration) -> Duration {
        Duration::from_millis(self.first_ms()).min(window)
    }

    /// The smallest check offset strictly after `elapsed_ms` since acceptance.
    pub fn next_after(&self, elapsed_ms: u64) -> u64 {
        if let Some(&o) = self.offsets.iter().find(|&&o| o > elapsed_ms) {
            return o;
        }
        let last = *self.offsets.last().expect("never empty");
        // Arithmetic, not a loop: a watcher back after days skips the checks it missed.
        let steps = (elapsed_ms - last) / self.every + 1;
        last.saturating_add(steps.saturating_mul(self.every))
    }
}

impl fmt::Display for ConfirmSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.offsets.iter().map(|&o| fmt_ms(o)).collect();
        write!(f, "{},every {}", items.join(","), fmt_ms(self.every))
    }
}

impl fmt::Debug for ConfirmSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfirmSchedule({self})")
    }
}

impl FromStr for ConfirmSchedule {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The daily quota reset time, a time of day in China Standard Time (UTC+8, no daylight saving),
/// `HH:MM`. WeChat resets daily quotas at midnight Beijing time, hence the default `00:00`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuotaReset {
    /// Minutes after midnight, 0 to 1439.
    minutes: u16,
}

impl QuotaReset {
    /// Parses `HH:MM` (24-hour clock, two digits each, 00:00 to 23:59).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| -> Option<u16> {
            b.get(r)?.iter().try_fold(0u16, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
            })
        };
        if b.len() != 5 || b[2] != b':' {
            return Err("not a time of day as HH:MM");
        }
        let (Some(h), Some(m)) = (digits(0..2), digits(3..5)) else {
            return Err("not a time of day as HH:MM");
        };
        if h > 23 || m > 59 {
            return Err("not a valid time of day");
        }
        Ok(Self {
            minutes: h * 60 + m,
        })
    }

    /// The hour, 0 to 23 (UTC+8).
    pub fn hour(self) -> u8 {
        (self.minutes / 60) as u8
    }

    /// The minute, 0 to 59.
    pub fn minute(self) -> u8 {
        (self.minutes % 60) as u8
    }

    /// The first reset strictly after `unix_ms` (milliseconds since the Unix epoch, UTC), in the
    /// same unit. Quota pauses wait until then.
    pub fn next_after(self, unix_ms: i64) -> i64 {
        let reset_in_day = i64::from(self.minutes) * 60_000;
        let offset = SHANGHAI_OFFSET_MS as i64;
        let local = unix_ms + offset;
        let day_start = local.div_euclid(DAY_MS) * DAY_MS;
        let mut next = day_start + reset_in_day;
        if next <= local {
            next += DAY_MS;
        }
        next - offset
    }
}

impl fmt::Display for QuotaReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl fmt::Debug for QuotaReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuotaReset({self} UTC+8)")
    }
}

impl FromStr for QuotaReset {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The first moment strictly after `now_ms` (Unix ms) when the Shanghai clock (UTC+8, no
/// daylight saving time) shows `reset` (`ENVSHARE_QUOTA_RESET`, default 00:00): when a quota
/// spent at `now_ms` (errcode 45009) is available again, so the pause lasts until then.
///
/// One implementation: this is [`QuotaReset::next_after`] in the unsigned ms the queue's pause
/// uses.
pub fn next_quota_reset(now_ms: u64, reset: QuotaReset) -> u64 {
    // Unix ms fit an i64 for the next 292 million years; clamp rather than wrap past that.
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX / 2);
    u64::try_from(reset.next_after(now)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_checks_at_1m_5m_15m_1h_then_every_6h() {
        let s = ConfirmSchedule::default();
        assert_eq!(s, ConfirmSchedule::parse("60s,5m,15m,1h,every 6h").unwrap());
        assert_eq!(s.first_ms(), 60_000);
        assert_eq!(s.next_after(60_000), 300_000);
        assert_eq!(s.next_after(3_599_999), 3_600_000);
        assert_eq!(s.next_after(3_600_000), 7 * 3_600_000);
        assert_eq!(s.next_after(8 * 3_600_000), 13 * 3_600_000);
        assert_eq!(s.to_string(), "1m,5m,15m,1h,every 6h");
    }

    #[test]
    fn without_every_the_last_gap_repeats() {
        let s = ConfirmSchedule::parse("100ms,200ms").unwrap();
        assert_eq!(s.next_after(0), 100);
        assert_eq!(s.next_after(100), 200);
        assert_eq!(s.next_after(200), 300);
        assert_eq!(s.next_after(450), 500);
        let one = ConfirmSchedule::parse("2s").unwrap();
        assert_eq!(one.next_after(2_000), 4_000);
    }

    #[test]
    fn bad_schedules_are_rejected_with_a_reason() {
        for bad in [
            "",
            "5",
            "5x",
            "5m,1m",
            "0s",
            "every 1h",
            "1m,every 1h,2h",
            "1m,every 0s",
        ] {
            assert!(ConfirmSchedule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
    }

    #[test]
    fn durations_are_a_whole_number_and_a_unit() {
        for (text, ms) in [
            ("100ms", 100),
            ("60s", 60_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("7d", 7 * 86_400_000),
            (" 6h ", 6 * 3_600_000),
            // Also what humantime reads beyond one number and one unit.
            ("1h 30m", 5_400_000),
            ("1.5h", 5_400_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for (bad, reason) in [
            ("", "needs a unit"),
            ("5", "needs a unit"),
            ("5x", "unknown unit"),
            ("-5s", "whole number"),
            ("ms", "whole number"),
            ("500us", "whole milliseconds"),
            ("99999999999999999999d", "too large"),
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }

    #[test]
    fn quota_reset_is_computed_in_utc_plus_8() {
        let midnight = QuotaReset::parse("00:00").unwrap();
        // 2026-11-30T02:00:00Z is 10:00 in Beijing; the next midnight there is
        // 2026-11-30T16:00:00Z.
        let now = 1_796_004_000_000; // 2026-11-30T02:00:00Z
        assert_eq!(midnight.next_after(now), 1_796_054_400_000);
        // Exactly at the reset: the next one is a day later.
        assert_eq!(
            midnight.next_after(1_796_054_400_000),
            1_796_054_400_000 + 86_400_000
        );
        let half_past_seven = QuotaReset::parse("07:30").unwrap();
        // 07:30 Beijing is 23:30Z the day before.
        assert_eq!(
            half_past_seven.next_after(now),
            1_796_054_400_000 + 7 * 3_600_000 + 30 * 60_000
        );
        assert!(QuotaReset::parse("23:59").is_ok());
        for bad in ["24:00", "12:60", "1:00", "12-00", "+1:00", "aa:bb", ""] {
            assert!(QuotaReset::parse(bad).is_err(), "{bad}");
        }
    }

    // 2026-11-30T00:00:00Z = 2026-11-30 08:00 in Shanghai.
    const NOV30_UTC_MIDNIGHT: u64 = 1_795_996_800_000;
    const H: u64 = 3_600_000;
    const DAY_MS: u64 = 24 * H;

    #[test]
    fn the_reset_after_a_shanghai_afternoon_is_the_next_shanghai_midnight() {
        // 2026-11-30 15:00 Shanghai (07:00 UTC) → 2026-12-01 00:00 Shanghai = 11-30 16:00 UTC.
        let now = NOV30_UTC_MIDNIGHT + 7 * H;
        let next = next_quota_reset(now, QuotaReset::default());
        assert_eq!(next, NOV30_UTC_MIDNIGHT + 16 * H);
    }

    #[test]
    fn the_reset_just_after_shanghai_midnight_is_a_day_later() {
        // 2026-12-01 00:00:01 Shanghai: the quota just reset; the next reset is a day away.
        let midnight = NOV30_UTC_MIDNIGHT + 16 * H;
        assert_eq!(
            next_quota_reset(midnight + 1_000, QuotaReset::default()),
            midnight + 24 * H
        );
        // Exactly at midnight counts as after it: the reset is the next one.
        assert_eq!(
            next_quota_reset(midnight, QuotaReset::default()),
            midnight + 24 * H
        );
        // One ms before midnight: the reset is in one ms.
        assert_eq!(
            next_quota_reset(midnight - 1, QuotaReset::default()),
            midnight
        );
    }

    #[test]
    fn the_reset_before_utc_midnight_uses_the_shanghai_date() {
        // 2026-11-29 23:30 UTC is already 2026-11-30 07:30 in Shanghai: next midnight in
        // Shanghai is 2026-11-30 16:00 UTC, not 2026-11-30 00:00 UTC.
        let now = NOV30_UTC_MIDNIGHT - H / 2;
        assert_eq!(
            next_quota_reset(now, QuotaReset::default()),
            NOV30_UTC_MIDNIGHT + 16 * H
        );
    }

    #[test]
    fn a_custom_reset_time_later_today_is_today() {
        let reset = QuotaReset::parse("09:30").unwrap();
        // 08:00 Shanghai → 09:30 Shanghai the same day = 01:30 UTC.
        assert_eq!(
            next_quota_reset(NOV30_UTC_MIDNIGHT, reset),
            NOV30_UTC_MIDNIGHT + H + H / 2
        );
        // 10:00 Shanghai → 09:30 the next day.
        assert_eq!(
            next_quota_reset(NOV30_UTC_MIDNIGHT + 2 * H, reset),
            NOV30_UTC_MIDNIGHT + 25 * H + H / 2
        );
    }

    #[test]
    fn a_reset_is_always_within_one_day_ahead() {
        for step in 0..2000u64 {
            let now = NOV30_UTC_MIDNIGHT + step * 7_919_993;
            for reset in [QuotaReset::default(), QuotaReset::parse("13:07").unwrap()] {
                let next = next_quota_reset(now, reset);
                assert!(next > now && next <= now + DAY_MS, "{now} {next}");
                let local = (next + SHANGHAI_OFFSET_MS) % DAY_MS;
                assert_eq!(
                    local,
                    (u64::from(reset.hour()) * 60 + u64::from(reset.minute())) * 60_000
                );
            }
        }
    }
}

//! When a confirmation entry is checked: `ENVSHARE_CONFIRM_SCHEDULE` and `ENVSHARE_CONFIRM_WINDOW`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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

/// Parses `100ms`, `60s`, `5m`, `1h`, `7d` (a whole number and a unit) into milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("a duration needs a unit (ms, s, m, h or d)")?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| "a duration starts with a whole number")?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err("unknown unit: use ms, s, m, h or d"),
    };
    n.checked_mul(scale)
        .map(Duration::from_millis)
        .ok_or("duration too large")
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
}

//! Exact parsing of SDL numbers: CPU units, byte sizes with Akash's suffixes, decimal prices.
//! No floats: `0.5` CPU is 500 millicores, `1.5Gi` is 1610612736 bytes.

/// A non-negative decimal `mantissa / 10^scale`, exactly as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: u128,
    pub scale: u32,
}

/// Most fractional digits read; more is refused rather than rounded silently.
const MAX_SCALE: u32 = 18;

impl Decimal {
    /// `123`, `0.5`, `+2.`, `.25`; no sign, no exponent.
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.strip_prefix('+').unwrap_or(s);
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        let scale = u32::try_from(frac.len()).ok().filter(|s| *s <= MAX_SCALE)?;
        let mut mantissa: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
        }
        Some(Decimal { mantissa, scale })
    }

    /// `floor(self × factor)`, `None` on overflow.
    pub fn times_floor(&self, factor: u128) -> Option<u128> {
        let num = self.mantissa.checked_mul(factor)?;
        Some(num / 10u128.checked_pow(self.scale)?)
    }
}

/// CPU units to millicores: `1` → 1000, `0.5` → 500, `"100m"` → 100. Like Akash, digits past
/// the thousandth are dropped.
pub fn cpu_millis(s: &str) -> Result<u64, &'static str> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
            return Err("millicores are a whole number followed by m, like 500m");
        }
        return m.parse().map_err(|_| "too many millicores");
    }
    let d = Decimal::parse(s)
        .ok_or("CPU units are a number like 1, 0.5 or 2.25, or millicores like 500m")?;
    let millis = d.times_floor(1000).ok_or("too many CPU units")?;
    u64::try_from(millis).map_err(|_| "too many CPU units")
}

/// How a size's unit was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitSpelling {
    /// One of Akash's own suffixes (`k Ki M Mi G Gi T Ti P Pi E Ei`) or none.
    Akash,
    /// Lower-case or `B`-suffixed forms (`gi`, `gb`, `GB`, `Mb`) that Akash's Go parser refuses
    /// and its TypeScript parser reads: `i` means powers of 1024, otherwise powers of 1000.
    Lenient,
}

const AKASH_SUFFIXES: [(&str, u128); 12] = [
    ("k", 1_000),
    ("Ki", 1 << 10),
    ("M", 1_000_000),
    ("Mi", 1 << 20),
    ("G", 1_000_000_000),
    ("Gi", 1 << 30),
    ("T", 1_000_000_000_000),
    ("Ti", 1 << 40),
    ("P", 1_000_000_000_000_000),
    ("Pi", 1 << 50),
    ("E", 1_000_000_000_000_000_000),
    ("Ei", 1 << 60),
];

fn lenient_factor(suffix: &str) -> Option<u128> {
    let lower = suffix.to_ascii_lowercase();
    let mut chars = lower.chars();
    let prefix = chars.next()?;
    let power = "kmgtpe".find(prefix)? + 1;
    let base: u128 = match chars.as_str() {
        "" | "b" => 1000,
        "i" | "ib" => 1024,
        _ => return None,
    };
    base.checked_pow(u32::try_from(power).ok()?)
}

/// A byte size: `512Mi`, `1G`, `1.5Gi`, `1073741824`; fractions of a byte are dropped as Akash
/// does. Returns how the unit was spelled so the caller can warn about lenient forms.
pub fn size_bytes(s: &str) -> Result<(u64, UnitSpelling), String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let d = Decimal::parse(num)
        .ok_or_else(|| "a size is a number with an optional unit, like 512Mi or 1Gi".to_string())?;
    let (factor, spelling) = match AKASH_SUFFIXES.iter().find(|(u, _)| *u == suffix) {
        _ if suffix.is_empty() => (1, UnitSpelling::Akash),
        Some((_, f)) => (*f, UnitSpelling::Akash),
        None => match lenient_factor(suffix) {
            Some(f) => (f, UnitSpelling::Lenient),
            None => {
                return Err(format!(
                    "unknown size unit {suffix:?}; use one of k Ki M Mi G Gi T Ti P Pi E Ei"
                ))
            }
        },
    };
    let bytes = d.times_floor(factor).ok_or_else(|| "the size is too large".to_string())?;
    let bytes = u64::try_from(bytes).map_err(|_| "the size does not fit in 64 bits".to_string())?;
    Ok((bytes, spelling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_units() {
        assert_eq!(cpu_millis("1"), Ok(1000));
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("1.0"), Ok(1000));
        assert_eq!(cpu_millis("100m"), Ok(100));
        assert_eq!(cpu_millis(".25"), Ok(250));
        assert_eq!(cpu_millis("0.0005"), Ok(0));
        assert!(cpu_millis("-1").is_err());
        assert!(cpu_millis("1e3").is_err());
        assert!(cpu_millis("m").is_err());
        assert!(cpu_millis("1.5m").is_err());
        assert!(cpu_millis("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("512Mi"), Ok((512 << 20, UnitSpelling::Akash)));
        assert_eq!(size_bytes("1G"), Ok((1_000_000_000, UnitSpelling::Akash)));
        assert_eq!(size_bytes("1.5Gi"), Ok((3 << 29, UnitSpelling::Akash)));
        assert_eq!(size_bytes("100"), Ok((100, UnitSpelling::Akash)));
        assert_eq!(size_bytes("1k"), Ok((1000, UnitSpelling::Akash)));
        assert_eq!(size_bytes("2gi"), Ok((2 << 30, UnitSpelling::Lenient)));
        assert_eq!(size_bytes("2GB"), Ok((2_000_000_000, UnitSpelling::Lenient)));
        assert_eq!(size_bytes("512Mb"), Ok((512_000_000, UnitSpelling::Lenient)));
        assert_eq!(size_bytes("1GiB"), Ok((1 << 30, UnitSpelling::Lenient)));
        assert_eq!(size_bytes("1K"), Ok((1000, UnitSpelling::Lenient)));
        assert!(size_bytes("1 Gi").is_err());
        assert!(size_bytes("Gi").is_err());
        assert!(size_bytes("1Qi").is_err());
        assert!(size_bytes("16Ei").is_err());
        assert!(size_bytes("-1Gi").is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(Decimal::parse("1.50"), Some(Decimal { mantissa: 15, scale: 1 }));
        assert_eq!(Decimal::parse("."), None);
        assert_eq!(Decimal::parse("1.2.3"), None);
        assert_eq!(Decimal::parse("99999999999999999999999999999999999999999"), None);
        assert_eq!(Decimal::parse("0.5").and_then(|d| d.times_floor(3)), Some(1));
    }
}

//! Kubernetes resource quantities ("100m", "0.5", "64Mi", "1G", "1e3"), parsed exactly.
//!
//! A quantity is kept as the text the user wrote (so it round-trips unchanged) and parsed into
//! an exact decimal/binary value on demand. No floating point is involved: `0.1` CPU is exactly
//! 100 millicores, and `1.5Gi` is exactly 1610612736 bytes.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A resource quantity as written in a manifest.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Quantity(pub String);

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("is empty")]
    Empty,
    #[error("is not a valid quantity {0:?}: expected a number with an optional suffix (Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E) or exponent (e3)")]
    Syntax(String),
    #[error("is too large ({0:?})")]
    TooLarge(String),
    #[error("must not be negative (got {0:?})")]
    Negative(String),
}

/// The exact value of a quantity: `digits × 10^exp10 × 2^exp2`, with `negative` as the sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedQuantity {
    pub negative: bool,
    pub digits: u128,
    pub exp10: i32,
    pub exp2: u32,
}

impl Quantity {
    pub fn new(s: impl Into<String>) -> Self {
        Quantity(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the quantity exactly.
    pub fn parse(&self) -> Result<ParsedQuantity, QuantityError> {
        parse(&self.0)
    }

    /// The value in thousandths, rounded up (Kubernetes' `MilliValue`): CPU in millicores.
    pub fn milli_value(&self) -> Result<u128, QuantityError> {
        let q = self.parse()?;
        if q.negative && q.digits != 0 {
            return Err(QuantityError::Negative(self.0.clone()));
        }
        q.scaled_ceil(3).ok_or_else(|| QuantityError::TooLarge(self.0.clone()))
    }

    /// The value rounded up to a whole number (Kubernetes' `Value`): memory in bytes.
    pub fn value(&self) -> Result<u128, QuantityError> {
        let q = self.parse()?;
        if q.negative && q.digits != 0 {
            return Err(QuantityError::Negative(self.0.clone()));
        }
        q.scaled_ceil(0).ok_or_else(|| QuantityError::TooLarge(self.0.clone()))
    }
}

impl ParsedQuantity {
    /// `ceil(|value| × 10^scale)`, or `None` on overflow of u128.
    pub fn scaled_ceil(&self, scale: i32) -> Option<u128> {
        let mut num = self.digits;
        let mut den: u128 = 1;
        let e = self.exp10.checked_add(scale)?;
        if e >= 0 {
            num = num.checked_mul(10u128.checked_pow(e as u32)?)?;
        } else {
            // More than 38 decimal places cannot be represented; the value rounds up to 1.
            match 10u128.checked_pow(e.unsigned_abs()) {
                Some(d) => den = d,
                None => return Some(u128::from(num != 0)),
            }
        }
        num = num.checked_mul(2u128.checked_pow(self.exp2)?)?;
        Some(num.div_ceil(den))
    }
}

const MAX_LEN: usize = 64;

fn parse(s: &str) -> Result<ParsedQuantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let syntax = || QuantityError::Syntax(s.to_string());
    if s.len() > MAX_LEN {
        return Err(QuantityError::TooLarge(s.to_string()));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if bytes[0] == b'+' || bytes[0] == b'-' {
        negative = bytes[0] == b'-';
        i = 1;
    }
    let mut digits: u128 = 0;
    let mut frac_digits: i32 = 0;
    let mut seen_digit = false;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            seen_digit = true;
            digits = digits
                .checked_mul(10)
                .and_then(|d| d.checked_add(u128::from(c - b'0')))
                .ok_or_else(|| QuantityError::TooLarge(s.to_string()))?;
            if seen_dot {
                frac_digits += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if !seen_digit {
        return Err(syntax());
    }
    let suffix = &s[i..];
    let (exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let rest = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E')).ok_or_else(syntax)?;
            let (sign, num) = match rest.as_bytes().first() {
                Some(b'-') => (-1, &rest[1..]),
                Some(b'+') => (1, &rest[1..]),
                _ => (1, rest),
            };
            if num.is_empty() || num.len() > 3 || !num.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            let n: i32 = num.parse().map_err(|_| syntax())?;
            (sign * n, 0)
        }
    };
    Ok(ParsedQuantity { negative, digits, exp10: exp10 - frac_digits, exp2 })
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({:?})", self.0)
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_string())
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML writes `cpu: 0.5` or `memory: 1e3` as numbers; Kubernetes accepts both forms.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            S(String),
            I(i64),
            U(u64),
            F(f64),
        }
        Ok(Quantity(match Repr::deserialize(d)? {
            Repr::S(s) => s,
            Repr::I(i) => i.to_string(),
            Repr::U(u) => u.to_string(),
            Repr::F(f) => format_float(f),
        }))
    }
}

/// Formats a float the shortest way that reads back the same (`0.5`, `1000`, `1e-7`).
pub(crate) fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        let s = format!("{f}");
        if s.len() > 20 {
            format!("{f:e}")
        } else {
            s
        }
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number"], "x-flotilla": "quantity" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> Result<u128, QuantityError> {
        Quantity::from(s).milli_value()
    }
    fn bytes(s: &str) -> Result<u128, QuantityError> {
        Quantity::from(s).value()
    }

    #[test]
    fn cpu_values_are_exact() {
        for (input, want) in [
            ("100m", 100),
            ("0.5", 500),
            ("1", 1000),
            ("2.25", 2250),
            (".1", 100),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("250000u", 250),
            ("1n", 1), // rounds up like MilliValue
            ("0", 0),
            ("+3", 3000),
        ] {
            assert_eq!(milli(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn memory_values_are_exact() {
        for (input, want) in [
            ("64Mi", 64 << 20),
            ("1G", 1_000_000_000),
            ("1.5Gi", 1_610_612_736),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("123Ki", 125_952),
            ("1k", 1000),
            ("0.5Ki", 512),
            ("1Ei", 1 << 60),
            ("100m", 1),
        ] {
            assert_eq!(bytes(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_quantities_are_rejected() {
        for input in ["", "64MB", "1.2.3", "abc", "Mi", "1 Gi", "1e", "1e1000", "1ki", "--1", "0x10", "1e+"] {
            assert!(Quantity::from(input).parse().is_err() || bytes(input).is_err(), "{input}");
        }
        assert_eq!(milli("-1"), Err(QuantityError::Negative("-1".into())));
        assert!(matches!(
            bytes("999999999999999999999999999999999999999999Ei"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn numbers_from_yaml_become_quantities() {
        let q: Quantity = serde_json::from_str("0.5").unwrap();
        assert_eq!(q.as_str(), "0.5");
        let q: Quantity = serde_json::from_str("1000.0").unwrap();
        assert_eq!(q.as_str(), "1000");
        let q: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(q.milli_value(), Ok(2000));
    }
}

//! Module parameter values checked as the kernel parses them (kernel/params.c): the integer
//! types with `kstrto*` in base 0 (`0x` hex, leading `0` octal, else decimal; a sign only for
//! the signed types; one trailing newline allowed), `bool`/`invbool` with `kstrtobool`,
//! strings up to 1,024 bytes, arrays as comma-separated elements.
//!
//! The kernel answers EINVAL for a value it cannot parse and ERANGE for one out of the type's
//! range; `finit_module` passes that on, and modprobe only says "Invalid argument".

/// Why a value does not fit its parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not a number / not a boolean (EINVAL).
    Invalid(String),
    /// A number outside the type's range (ERANGE).
    OutOfRange(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Invalid(m) | Problem::OutOfRange(m) => f.write_str(m),
        }
    }
}

/// The range of each integer type the kernel declares parameters with.
fn integer_range(kind: &str) -> Option<(i128, i128)> {
    Some(match kind {
        "byte" => (0, u8::MAX as i128),
        "short" => (i16::MIN as i128, i16::MAX as i128),
        "ushort" => (0, u16::MAX as i128),
        "int" => (i32::MIN as i128, i32::MAX as i128),
        "uint" | "hexint" => (0, u32::MAX as i128),
        "long" => (i64::MIN as i128, i64::MAX as i128),
        "ulong" | "ullong" => (0, u64::MAX as i128),
        _ => return None,
    })
}

/// `kstrto*` with base 0: `None` when it is not a number at all, else the value (which may be
/// outside any type's range).
fn parse_integer(text: &str, signed: bool) -> Option<i128> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') if signed => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .filter(|h| h.starts_with(|c: char| c.is_ascii_hexdigit()))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Past u64 the kernel says ERANGE whatever the type: saturate rather than overflow.
    let value = digits.chars().try_fold(0i128, |acc, c| {
        let next = acc * radix as i128 + c.to_digit(radix).unwrap() as i128;
        Some(next.min(u64::MAX as i128 + 1))
    })?;
    Some(if negative { -value } else { value })
}

/// `kstrtobool`: y/Y/1/n/N/0 by their first character, "on"/"off" by their second.
fn parse_bool(text: &str) -> bool {
    let b = text.as_bytes();
    match b.first() {
        Some(b'y' | b'Y' | b'1' | b'n' | b'N' | b'0') => true,
        Some(b'o' | b'O') => matches!(b.get(1), Some(b'n' | b'N' | b'f' | b'F')),
        _ => false,
    }
}

/// Checks `value` against the declared `kind` (modinfo's parmtype: `int`, `array of uint`, ...).
/// `None` for a flag given without `=` (only booleans accept that). Unknown kinds pass.
pub fn check(kind: &str, value: Option<&str>) -> Result<(), Problem> {
    if let Some(element) = kind.strip_prefix("array of ") {
        let value = value.unwrap_or("");
        for (i, item) in value.split(',').enumerate() {
            check(element, Some(item)).map_err(|p| match p {
                Problem::Invalid(m) => Problem::Invalid(format!("element {}: {m}", i + 1)),
                Problem::OutOfRange(m) => Problem::OutOfRange(format!("element {}: {m}", i + 1)),
            })?;
        }
        return Ok(());
    }
    if let Some((min, max)) = integer_range(kind) {
        let Some(value) = value else {
            return Err(Problem::Invalid(format!("{kind} needs a value")));
        };
        let Some(n) = parse_integer(value, min < 0) else {
            return Err(Problem::Invalid(format!("'{value}' is not a valid {kind}")));
        };
        if n < min || n > max {
            return Err(Problem::OutOfRange(format!(
                "{value} is outside the range of {kind} ({min} to {max})"
            )));
        }
        return Ok(());
    }
    match kind {
        "bool" | "invbool" | "bint" => match value {
            None => Ok(()),
            Some(v) if parse_bool(v) => Ok(()),
            Some(v) => Err(Problem::Invalid(format!(
                "'{v}' is not a valid {kind} (y, n, 1, 0, on or off)"
            ))),
        },
        "charp" | "string" => match value {
            Some(v) if v.len() > 1024 => Err(Problem::OutOfRange(format!(
                "a {kind} parameter takes at most 1024 bytes, not {}",
                v.len()
            ))),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_kstrto_reads_them() {
        assert!(check("int", Some("42")).is_ok());
        assert!(check("int", Some("-2147483648")).is_ok());
        assert!(check("int", Some("0x7fffffff")).is_ok());
        assert!(check("int", Some("017\n")).is_ok());
        assert!(matches!(
            check("int", Some("4294967295")),
            Err(Problem::OutOfRange(_))
        ));
        assert!(matches!(
            check("uint", Some("-1")),
            Err(Problem::Invalid(_))
        ));
        assert!(check("uint", Some("4294967295")).is_ok());
        assert!(matches!(
            check("byte", Some("256")),
            Err(Problem::OutOfRange(_))
        ));
        assert!(matches!(check("int", Some("08")), Err(Problem::Invalid(_))));
        assert!(matches!(check("int", Some("")), Err(Problem::Invalid(_))));
        assert!(matches!(check("int", None), Err(Problem::Invalid(_))));
        assert!(matches!(
            check("ulong", Some("99999999999999999999999")),
            Err(Problem::OutOfRange(_))
        ));
    }

    #[test]
    fn booleans_strings_and_arrays() {
        for ok in ["y", "Yes", "1", "n", "0", "on", "off", "OFF"] {
            assert!(check("bool", Some(ok)).is_ok(), "{ok}");
        }
        assert!(check("bool", None).is_ok());
        assert!(check("invbool", Some("maybe")).is_err());
        assert!(check("charp", Some(&"x".repeat(1025))).is_err());
        assert!(check("array of int", Some("1,2,3")).is_ok());
        assert!(matches!(
            check("array of int", Some("1,x,3")),
            Err(Problem::Invalid(m)) if m.starts_with("element 2")
        ));
        assert!(check("something new", Some("whatever")).is_ok());
    }
}

//! JSON values read straight from a request body, without a `serde_json::Value` tree: scalars
//! whose text borrows from the body (unless JSON escapes forced a copy), and a sink that appends
//! them to a vector, flattening nested arrays where the protocol allows it (OIP tensor data) or
//! describing an array as invalid where it does not (a KServe v1 record's value).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use shared_inference::input::plain_decimal;

/// One value as sent.
#[derive(Debug, PartialEq)]
pub enum Scalar<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Null,
    /// Anything else (a boolean, an array where none is allowed, an object), described for the
    /// error message.
    Invalid(String),
}

impl Scalar<'_> {
    /// The value as an error message quotes it.
    pub fn describe(&self) -> String {
        match self {
            Scalar::Number(x) => x.to_string(),
            Scalar::Text(s) => format!("{s:?}"),
            Scalar::Null => "null".into(),
            Scalar::Invalid(what) => what.clone(),
        }
    }
}

/// Appends the next JSON value to `out`: a scalar as one element; an array element by element
/// (recursively) when `flatten_arrays`, else as one [`Scalar::Invalid`].
pub struct ScalarSink<'v, 'a> {
    pub out: &'v mut Vec<Scalar<'a>>,
    pub flatten_arrays: bool,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ScalarSink<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ScalarSink<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, text or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.out.push(Scalar::Number(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.out.push(Scalar::Text(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.push(Scalar::Text(Cow::Owned(v.to_string())));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.push(Scalar::Null);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push(Scalar::Invalid(v.to_string()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.flatten_arrays {
            while seq.next_element_seed(ScalarSink { out: &mut *self.out, flatten_arrays: true })?.is_some() {}
        } else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            self.out.push(Scalar::Invalid("an array".into()));
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.out.push(Scalar::Invalid("an object".into()));
        Ok(())
    }
}

/// Text (an object's key) that borrows from the body unless JSON escapes forced a copy.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A reader for the plain JSON nearly every request body is: strings without escapes or
/// control characters, numbers of at most 15 digits without an exponent, `null`. It skips
/// serde's visitor layers and validates UTF-8 once per body instead of once per string; every
/// method gives up (`None`) on anything else, and the caller then hands the body to serde_json,
/// which reads it or explains what is wrong with it. On what it accepts it gives exactly what
/// serde_json gives: both compute a number of up to 15 digits as one correctly rounded division
/// `m / 10^k` of two exact f64s (the tests compare both parsers bit for bit).
pub struct PlainReader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> PlainReader<'a> {
    /// A reader at the start of `body`, if it is UTF-8. Every string slice taken later starts
    /// and ends at an ASCII quote, so it is valid UTF-8 too.
    pub fn new(body: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        Some(Self { text, bytes: text.as_bytes(), at: 0 })
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_space();
        self.at == self.bytes.len()
    }

    /// Skips whitespace, then takes `byte` if it is next.
    pub fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    pub fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// A string without escapes or control characters.
    pub fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' | 0..0x20 => return None,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        self.text.get(start..self.at - 1)
    }

    /// A string, a number or `null`.
    pub fn value(&mut self) -> Option<Scalar<'a>> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'"' => self.string().map(|s| Scalar::Text(Cow::Borrowed(s))),
            b'n' if self.bytes[self.at..].starts_with(b"null") => {
                self.at += 4;
                Some(Scalar::Null)
            }
            b'-' | b'0'..=b'9' => self.number().map(Scalar::Number),
            _ => None,
        }
    }

    /// An integer that serde_json reads as an `i64`: no fraction, no exponent, at most 15
    /// digits, and not `-0` (which it reads as a float).
    pub fn integer(&mut self) -> Option<i64> {
        self.skip_space();
        let start = self.at;
        let negative = self.eat_byte(b'-');
        let digits = self.whole_number()?;
        if digits > 15 || matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value: i64 = self.text.get(start..self.at)?.parse().ok()?;
        (!(negative && value == 0)).then_some(value)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)?` with at most 15 digits in all, read by
    /// [`plain_decimal`] as one correctly rounded division `m / 10^k`.
    fn number(&mut self) -> Option<f64> {
        let start = self.at;
        self.eat_byte(b'-');
        self.whole_number()?;
        if self.eat_byte(b'.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            return None;
        }
        plain_decimal(&self.bytes[start..self.at])
    }

    /// The digits of `0 | [1-9][0-9]*`, and how many there were.
    fn whole_number(&mut self) -> Option<usize> {
        let start = self.at;
        let digits = self.digits();
        (digits == 1 || (digits > 1 && self.bytes[start] != b'0')).then_some(digits)
    }

    fn eat_byte(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// Skips decimal digits and says how many there were.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        self.at - start
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `count` decimals of every length from 1 to 15 digits, either sign, with the point
    /// anywhere, as JSON writes them; from a generator with a fixed seed.
    pub(crate) fn plain_decimals(count: usize) -> Vec<String> {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let digits = 1 + (i % 15);
                let mantissa = state % 10u64.pow(digits as u32);
                let text = format!("{mantissa:0width$}", width = digits);
                let point = (state >> 50) as usize % digits;
                let (int, frac) = text.split_at(point.max(1));
                let int = int.trim_start_matches('0');
                let int = if int.is_empty() { "0" } else { int };
                let sign = if state & 1 == 1 { "-" } else { "" };
                if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
            })
            .collect()
    }

    /// What the plain parser and the general one read from `body`, which the plain one must
    /// accept and both must read alike: both readings.
    pub(crate) fn read_alike<'a, T: PartialEq + fmt::Debug>(
        body: &'a str,
        plain: impl Fn(&'a [u8]) -> Option<T>,
        general: impl Fn(&'a [u8]) -> Result<T, crate::error::ApiError>,
    ) -> (T, T) {
        let fast = plain(body.as_bytes()).unwrap_or_else(|| panic!("plain parser refused {body}"));
        let slow = general(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {}", e.message));
        assert_eq!(fast, slow, "{body}");
        (fast, slow)
    }

    /// Values two parsers read from `body` compare equal as values (`assert_eq!`), and their
    /// numbers also bit for bit: -0 and 0 are equal values.
    pub(crate) fn assert_same_bits(body: &str, a: &[Scalar<'_>], b: &[Scalar<'_>]) {
        assert_eq!(a, b, "{body}");
        for (a, b) in a.iter().zip(b) {
            if let (Scalar::Number(a), Scalar::Number(b)) = (a, b) {
                assert_eq!(a.to_bits(), b.to_bits(), "{body}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn integers_are_read_only_where_serde_json_reads_an_i64() {
        let read = |text: &str| PlainReader::new(text.as_bytes()).and_then(|mut p| p.integer());
        assert_eq!(read(" 64"), Some(64));
        assert_eq!(read("0"), Some(0));
        assert_eq!(read("-3"), Some(-3));
        assert_eq!(read("999999999999999"), Some(999_999_999_999_999));
        assert_eq!(read("-999999999999999"), Some(-999_999_999_999_999));
        for refused in ["-0", "1.0", "1e2", "01", "1000000000000000", "-", "x", ""] {
            assert_eq!(read(refused), None, "{refused}");
            // serde_json reads none of them as an i64 this reader would have to match.
            let general: Result<i64, _> = serde_json::from_str(refused);
            assert!(general.is_err() || refused.len() > 15, "{refused}: {general:?}");
        }
    }
}

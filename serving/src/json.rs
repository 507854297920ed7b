//! JSON values read straight from a request body, without a `serde_json::Value` tree: scalars
//! whose text borrows from the body (unless JSON escapes forced a copy), and a sink that appends
//! them to a vector, flattening nested arrays where the protocol allows it (OIP tensor data) or
//! describing an array as invalid where it does not (a KServe v1 record's value).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One value as sent.
#[derive(Debug, PartialEq)]
pub enum Scalar<'a> {
    /// A number written with a fraction or an exponent.
    Number(f64),
    /// A number written as an integer, exactly (an `f64` cannot tell 2^63 from `i64::MAX`).
    Integer(i128),
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
            Scalar::Integer(x) => x.to_string(),
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
        self.out.push(Scalar::Integer(v.into()));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.out.push(Scalar::Integer(v.into()));
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str, flatten_arrays: bool) -> Vec<Scalar<'_>> {
        let mut out = Vec::new();
        let mut deserializer = serde_json::Deserializer::from_str(body);
        ScalarSink { out: &mut out, flatten_arrays }.deserialize(&mut deserializer).expect("valid JSON");
        out
    }

    #[test]
    fn values_are_read_flat_or_described_when_they_cannot_be() {
        let flat = read(r#"[[1, 2.5], [null, "a\"b"], [-0.0, 1e3]]"#, true);
        assert_eq!(
            flat,
            [
                Scalar::Integer(1),
                Scalar::Number(2.5),
                Scalar::Null,
                Scalar::Text("a\"b".into()),
                Scalar::Number(-0.0),
                Scalar::Number(1000.0)
            ]
        );
        // Integers are kept exactly, past what an f64 holds.
        assert_eq!(
            read("[9223372036854775807, 18446744073709551615, -9223372036854775808]", true),
            [Scalar::Integer(i64::MAX.into()), Scalar::Integer(u64::MAX.into()), Scalar::Integer(i64::MIN.into())]
        );
        assert!(flat[4] == Scalar::Number(0.0) && matches!(flat[4], Scalar::Number(z) if z.is_sign_negative()));
        // Strings without escapes borrow from the body.
        assert!(matches!(&read(r#""plain""#, false)[0], Scalar::Text(Cow::Borrowed("plain"))));
        assert_eq!(read("[1, 2]", false), [Scalar::Invalid("an array".into())]);
        assert_eq!(read(r#"{"a": 1}"#, true), [Scalar::Invalid("an object".into())]);
        assert_eq!(read("true", true), [Scalar::Invalid("true".into())]);
    }
}

//! One JSON line read straight into per-field text slots: keys are looked up
//! by position in the contract (a producer writes its keys in one order, so
//! the next key is tried first), values are written as the text the field
//! parser reads, and nothing is built per line (no map, no `Value`, no key
//! strings). What it accepts and how it fails is what parsing the line into
//! a `serde_json::Map` and reading fields out of it did:
//! - a string is its unescaped text; a number is `serde_json::Number`'s
//!   text (so `2.50` reads as `2.5`, as before); a bool is `true`/`false`;
//!   null and a missing key are empty;
//! - an array or object value is a reason (`<field>: nested JSON value`);
//! - a key given twice is a reason for the whole line;
//! - malformed JSON is `not a JSON object: <serde_json's message>`.

use std::fmt;
use std::io::Write;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The state of one line, reused from line to line.
pub struct JsonRow {
    names: Vec<String>,
    /// The text of each contract field (empty: null or missing).
    slots: Vec<Vec<u8>>,
    /// Whether each field was given.
    seen: Vec<bool>,
    /// Whether each field held an array or object.
    nested: Vec<bool>,
    /// Keys outside the contract seen on this line (to find repeats).
    others: std::collections::HashSet<String>,
    /// Keys named more than once, in the order the repeats were found.
    repeated: Vec<String>,
    /// The field the next key is tried against first.
    hint: usize,
}

/// Why a line is not a row.
pub enum Bad {
    /// Not JSON, or not an object: serde_json's message.
    Syntax(String),
    /// Reasons about its keys and values.
    Reasons(Vec<String>),
}

impl JsonRow {
    /// A reader for objects with these field names.
    pub fn new(names: Vec<String>) -> Self {
        let n = names.len();
        JsonRow {
            names,
            slots: vec![Vec::new(); n],
            seen: vec![false; n],
            nested: vec![false; n],
            others: std::collections::HashSet::new(),
            repeated: Vec::new(),
            hint: 0,
        }
    }

    /// Read one line; the field texts are then in [`JsonRow::text`].
    pub fn read(&mut self, line: &[u8]) -> Result<(), Bad> {
        for s in &mut self.slots {
            s.clear();
        }
        self.seen.fill(false);
        self.nested.fill(false);
        self.others.clear();
        self.repeated.clear();
        let mut de = serde_json::Deserializer::from_slice(line);
        ObjectSeed(self)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| Bad::Syntax(e.to_string()))?;
        if !self.repeated.is_empty() {
            return Err(Bad::Reasons(vec![format!(
                "key(s) {} appear more than once (ambiguous: which value is meant?)",
                self.repeated.join(", ")
            )]));
        }
        let nested: Vec<String> = self
            .nested
            .iter()
            .zip(&self.names)
            .filter(|(n, _)| **n)
            .map(|(_, name)| format!("{name}: nested JSON value"))
            .collect();
        if nested.is_empty() {
            Ok(())
        } else {
            Err(Bad::Reasons(nested))
        }
    }

    /// The text of field `i` as read (empty: null or missing).
    pub fn text(&self, i: usize) -> &[u8] {
        self.slots.get(i).map_or(&[][..], Vec::as_slice)
    }

    fn field(&mut self, key: &str) -> Option<usize> {
        let n = self.names.len();
        if n == 0 {
            return None;
        }
        let start = self.hint.min(n - 1);
        let i = (start..n).chain(0..start).find(|&i| self.names[i] == key)?;
        self.hint = i + 1;
        Some(i)
    }

    fn note_key(&mut self, key: &str) -> Option<usize> {
        match self.field(key) {
            Some(i) => {
                if std::mem::replace(&mut self.seen[i], true) {
                    self.repeat(key);
                    return None;
                }
                Some(i)
            }
            None => {
                if self.others.contains(key) {
                    self.repeat(key);
                } else {
                    self.others.insert(key.to_string());
                }
                None
            }
        }
    }

    fn repeat(&mut self, key: &str) {
        if !self.repeated.iter().any(|k| k == key) {
            self.repeated.push(key.to_string());
        }
    }
}

struct ObjectSeed<'s>(&'s mut JsonRow);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let row = self.0;
        while let Some(slot) = map.next_key_seed(KeySeed(row))? {
            match slot {
                Some(i) => map.next_value_seed(ValueSeed {
                    out: &mut row.slots[i],
                    nested: &mut row.nested[i],
                })?,
                // Parsed whole (and then dropped), not skipped: the line is
                // accepted only if all of it is valid JSON, as before
                // (skipping checks neither UTF-8, nor escapes, nor number
                // range, nor depth).
                None => {
                    map.next_value::<serde_json::Value>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key: the contract field it names, if it names one not seen yet.
struct KeySeed<'s>(&'s mut JsonRow);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.note_key(key))
    }
}

/// A value written as text into a field's slot.
struct ValueSeed<'s> {
    out: &'s mut Vec<u8>,
    nested: &'s mut bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn number<E: de::Error>(self, n: serde_json::Number) -> Result<(), E> {
        write!(self.out, "{n}").map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v.into())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.number(n),
            // serde_json never yields a non-finite number; be null if it did.
            None => Ok(()),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<serde_json::Value>()?.is_some() {}
        *self.nested = true;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<String, serde_json::Value>()?.is_some() {}
        *self.nested = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reading the line into a `serde_json::Map` gave (the reader
    /// before this one): the field texts, or the reasons / the syntax error.
    fn by_map(names: &[&str], line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        struct Object {
            map: serde_json::Map<String, serde_json::Value>,
            repeated: Vec<String>,
        }
        impl<'de> serde::Deserialize<'de> for Object {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Object;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Object, A::Error> {
                        let mut o = Object {
                            map: serde_json::Map::new(),
                            repeated: Vec::new(),
                        };
                        while let Some(k) = a.next_key::<String>()? {
                            let v = a.next_value()?;
                            if o.map.contains_key(&k) {
                                if !o.repeated.contains(&k) {
                                    o.repeated.push(k);
                                }
                            } else {
                                o.map.insert(k, v);
                            }
                        }
                        Ok(o)
                    }
                }
                d.deserialize_map(V)
            }
        }
        let o: Object = serde_json::from_slice(line).map_err(|e| format!("syntax: {e}"))?;
        if !o.repeated.is_empty() {
            return Err(format!("repeated: {}", o.repeated.join(", ")));
        }
        let mut out = Vec::new();
        let mut nested = Vec::new();
        for n in names {
            out.push(match o.map.get(*n) {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::String(s)) => s.as_bytes().to_vec(),
                Some(serde_json::Value::Number(x)) => x.to_string().into_bytes(),
                Some(serde_json::Value::Bool(b)) => b.to_string().into_bytes(),
                Some(_) => {
                    nested.push(format!("{n}: nested JSON value"));
                    Vec::new()
                }
            });
        }
        if nested.is_empty() {
            Ok(out)
        } else {
            Err(format!("reasons: {}", nested.join("; ")))
        }
    }

    fn by_reader(r: &mut JsonRow, n: usize, line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        match r.read(line) {
            Ok(()) => Ok((0..n).map(|i| r.text(i).to_vec()).collect()),
            Err(Bad::Syntax(e)) => Err(format!("syntax: {e}")),
            Err(Bad::Reasons(v)) if v[0].starts_with("key(s) ") => Err(format!(
                "repeated: {}",
                v[0].trim_start_matches("key(s) ")
                    .trim_end_matches(" appear more than once (ambiguous: which value is meant?)")
            )),
            Err(Bad::Reasons(v)) => Err(format!("reasons: {}", v.join("; "))),
        }
    }

    #[test]
    fn reads_every_line_as_the_map_reader_did() {
        let names = ["a", "b", "c", "é"];
        let lines: &[&str] = &[
            r#"{"a":"x","b":2,"c":true,"é":null}"#,
            r#"{"c":false, "b":"2.50", "a" : 2.50}"#,
            r#"{"a":1e2,"b":-0,"c":-0.0,"é":12345678901234567890123}"#,
            r#"{"a":18446744073709551615,"b":-9223372036854775808,"c":1.0}"#,
            r#"{"a":"tab\there \"q\" \u00e9 \ud83d\ude00","zz":[1,{"x":2}]}"#,
            r#"{"b":[1,2],"a":{"k":"v"},"c":[]}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"z":1,"a":1,"z":2,"a":3,"z":4}"#,
            r#"{"\u0061":1,"a":2}"#,
            r#"{}"#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,}"#,
            r#"[1,2]"#,
            r#"5"#,
            r#""text""#,
            r#"null"#,
            r#"{"a":nul}"#,
            r#"{"a":1e400}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"unterminated}",
            " \t{\"b\":3} ",
            r#"{"é":"ü","c":"","b":null}"#,
            // Invalid JSON under keys outside the contract, repeated keys
            // and inside nested values is still invalid JSON.
            r#"{"a":1,"zz":"\ud800"}"#,
            r#"{"a":1,"zz":1e400}"#,
            r#"{"zz":[1,]}"#,
            r#"{"zz":{"k":1,}}"#,
            r#"{"a":[1e400]}"#,
            r#"{"a":1,"a":"\ud800"}"#,
            r#"{"a":{"k":{"k2":"\ud800"}}}"#,
        ];
        let deep = format!("{{\"a\":1,\"zz\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let bad_utf8 = b"{\"a\":1,\"zz\":\"\xff\"}".to_vec();
        let mut r = JsonRow::new(names.iter().map(|s| s.to_string()).collect());
        for line in [deep.as_bytes(), &bad_utf8] {
            let want = by_map(&names, line);
            assert!(want.is_err());
            assert_eq!(by_reader(&mut r, names.len(), line), want);
        }
        for line in lines {
            let want = by_map(&names, line.as_bytes());
            let got = by_reader(&mut r, names.len(), line.as_bytes());
            assert_eq!(got, want, "line {line}");
        }
        // The same lines again, in reverse: nothing carries over.
        for line in lines.iter().rev() {
            let want = by_map(&names, line.as_bytes());
            assert_eq!(by_reader(&mut r, names.len(), line.as_bytes()), want);
        }
    }
}

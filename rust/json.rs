//! The JSON of run logs as the core reads it: the top level of an object as raw fields borrowed
//! from the bytes, Python's non-finite numbers, and how deep a run log may nest.
//!
//! **Non-finite numbers.** runnable writes its run logs with `json.dump`, which writes a float
//! NaN or infinity as the bare tokens `NaN`, `Infinity` and `-Infinity`; the models write them
//! the same way (`ser_json_inf_nan='constants'`), and every Python reader reads them back as
//! floats. serde_json refuses those tokens. The core never needs their value, only where they
//! begin and end, so a document that serde_json refuses is read a second way: a copy in which
//! each bare token (outside strings, where a value may stand) is replaced by a number of the
//! same length is parsed, and every value is taken back from the original at the same offsets.
//! What is copied out is therefore always the original text, tokens included, byte for byte.
//! This is simpler than a parser of our own and costs nothing on the common path: the copy is
//! made only after serde_json has refused the text. (serde_json's `arbitrary_precision` does
//! not help: it keeps the digits of numbers, and still refuses these tokens.)
//!
//! How deep a run log may nest, and the checks writers make, are in `nesting`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

// --- the top level of an object ---------------------------------------------------------------

/// A string borrowed from the input when it has no escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The top level of an object as serde_json reads it: keys, and values checked but not parsed.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawObject<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some((key, value)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    entries.push((key.0, value));
                }
                Ok(RawObject(entries))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A JSON object's top level: (key, raw value text) pairs in stored order, duplicates kept,
/// borrowed from the input. Values are checked (they are JSON, non-finite tokens included) but
/// not parsed into anything.
pub type Fields<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// The top level of a JSON object, or why the text is not one (in words that follow "it").
pub fn parse_object(text: &str) -> std::result::Result<Fields<'_>, String> {
    if text.trim_ascii().is_empty() {
        return Err("it is empty".to_string());
    }
    let refused = match serde_json::from_str::<RawObject<'_>>(text) {
        Ok(object) => {
            return Ok(object
                .0
                .into_iter()
                .map(|(key, value)| (key, value.get()))
                .collect())
        }
        Err(e) => e,
    };
    let Some(finite) = with_finite_stand_ins(text) else {
        return Err(describe(&refused));
    };
    let object = serde_json::from_str::<RawObject<'_>>(&finite).map_err(|e| describe(&e))?;
    // The same offsets in the original: the stand-ins have the lengths of the tokens.
    let base = finite.as_ptr() as usize;
    let original = |part: &str| {
        let at = part.as_ptr() as usize - base;
        &text[at..at + part.len()]
    };
    Ok(object
        .0
        .into_iter()
        .map(|(key, value)| {
            let key = match key {
                Cow::Borrowed(borrowed) => Cow::Borrowed(original(borrowed)),
                Cow::Owned(owned) => Cow::Owned(owned),
            };
            (key, original(value.get()))
        })
        .collect())
}

/// An object whose every value is an object, each value's top level read in the same pass:
/// the steps (or branches) a document holds. serde_json reads each byte once here, where
/// [`parse_object`] of the outer object and then of each value reads the values' bytes twice.
struct RawObjects<'a>(Vec<(Cow<'a, str>, RawObject<'a>)>);

impl<'de> Deserialize<'de> for RawObjects<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ObjectsVisitor;
        impl<'de> Visitor<'de> for ObjectsVisitor {
            type Value = RawObjects<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of objects")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawObjects<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<Text<'de>, RawObject<'de>>()? {
                    entries.push((key.0, value));
                }
                Ok(RawObjects(entries))
            }
        }
        deserializer.deserialize_map(ObjectsVisitor)
    }
}

/// The members of a JSON object whose values are all objects, each with its value's top level
/// ([`parse_object`] of each), in stored order, duplicates kept; `None` for any other text (not
/// JSON, a value that is not an object, non-finite tokens), which the caller reads the longer
/// way for the same result or the same error.
pub fn parse_object_of_objects(text: &str) -> Option<Vec<(Cow<'_, str>, Fields<'_>)>> {
    Some(serde_json::from_str::<RawObjects<'_>>(text).ok()?.fields())
}

impl<'a> RawObjects<'a> {
    /// Each member's key with its object's fields, in stored order.
    fn fields(self) -> Vec<(Cow<'a, str>, Fields<'a>)> {
        self.0
            .into_iter()
            .map(|(key, object)| {
                let fields = object
                    .0
                    .into_iter()
                    .map(|(name, value)| (name, value.get()))
                    .collect();
                (key, fields)
            })
            .collect()
    }
}

/// An object's top level with the value under `children_key` read in the same pass as an
/// object of objects ([`parse_object_of_objects`]): a document's steps (or branches) are most
/// of its bytes, and [`parse_object`] of the document, then of that value, reads them twice.
/// The children key keeps its place among the fields with `{}` as its value (the caller writes
/// the children there from what it makes of them). `None` for any text the two reads would not
/// both take as it is (not JSON, non-finite tokens, a value under the key that is not an object
/// of objects, the key twice), which the caller reads the longer way for the same result or
/// the same error.
pub fn parse_object_with_children<'a>(
    text: &'a str,
    children_key: &str,
) -> Option<ObjectWithChildren<'a>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed =
        serde::de::DeserializeSeed::deserialize(ChildrenSeed(children_key), &mut deserializer)
            .ok()?;
    deserializer.end().ok()?;
    Some(parsed)
}

/// What [`parse_object_with_children`] reads: the top level, and the children's top levels.
pub struct ObjectWithChildren<'a> {
    pub fields: Fields<'a>,
    pub children: Vec<(Cow<'a, str>, Fields<'a>)>,
}

struct ChildrenSeed<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for ChildrenSeed<'_> {
    type Value = ObjectWithChildren<'de>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        struct SeedVisitor<'k>(&'k str);
        impl<'de> Visitor<'de> for SeedVisitor<'_> {
            type Value = ObjectWithChildren<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<ObjectWithChildren<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(12));
                let mut children = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == self.0 {
                        if children.is_some() {
                            return Err(serde::de::Error::custom("the children key twice"));
                        }
                        children = Some(map.next_value::<RawObjects<'de>>()?.fields());
                        fields.push((key.0, "{}"));
                    } else {
                        let value = map.next_value::<&'de RawValue>()?;
                        fields.push((key.0, value.get()));
                    }
                }
                Ok(ObjectWithChildren {
                    fields,
                    children: children.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_map(SeedVisitor(self.0))
    }
}

/// [`parse_object`] of bytes.
pub fn parse_object_bytes(bytes: &[u8]) -> std::result::Result<Fields<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 ({e})"))?;
    parse_object(text)
}

/// Why serde_json refuses `bytes` as a JSON object, in its own words ("invalid type: sequence,
/// expected a map at line 1 column 0"), for messages that have always said it so.
pub fn refusal(bytes: &[u8]) -> String {
    match serde_json::from_slice::<indexmap::IndexMap<String, serde::de::IgnoredAny>>(bytes) {
        Err(e) => e.to_string(),
        Ok(_) => "it is not a JSON object".to_string(),
    }
}

fn describe(err: &serde_json::Error) -> String {
    if err.is_data() {
        "it is not a JSON object".to_string()
    } else {
        format!("it is not valid JSON ({err})")
    }
}

/// The bare tokens Python writes for non-finite floats, each with a number of its length.
const STAND_INS: [(&[u8], &[u8]); 3] = [
    (b"-Infinity", b"-1.000000"),
    (b"Infinity", b"1.000000"),
    (b"NaN", b"0.0"),
];

/// `text` with every non-finite token where a value may stand replaced by a number of the same
/// length; `None` when it has none (the text was refused for another reason). The summary of a
/// run log (`crate::summary`) reads its documents the same way.
pub fn with_finite_stand_ins(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    // The last byte outside strings and blanks: a value starts after `[`, `,`, `:` or nothing.
    let mut last = b'[';
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if in_string {
            match byte {
                b'\\' => at += 1,
                b'"' => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                last = byte;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'N' | b'I' | b'-' if matches!(last, b'[' | b',' | b':') => {
                let found = STAND_INS.iter().find(|(token, _)| {
                    bytes[at..].starts_with(token)
                        && bytes.get(at + token.len()).map_or(true, |&next| {
                            matches!(next, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                        })
                });
                if let Some((token, stand_in)) = found {
                    let copy = out.get_or_insert_with(|| bytes.to_vec());
                    copy[at..at + token.len()].copy_from_slice(stand_in);
                    at += token.len();
                    last = b'0';
                    continue;
                }
                last = byte;
            }
            _ => last = byte,
        }
        at += 1;
    }
    // Only ASCII was replaced by ASCII: still UTF-8.
    out.map(|copy| String::from_utf8(copy).expect("ASCII replaced by ASCII"))
}

/// The last value of `key` at the top level of a JSON object; `None` when it is absent or the
/// bytes are not a JSON object.
pub fn top_level_value<'a>(bytes: &'a [u8], key: &str) -> Option<&'a str> {
    let fields = parse_object_bytes(bytes).ok()?;
    fields
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

// --- writing ----------------------------------------------------------------------------------

/// `"key":`, the key escaped as JSON.
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    // Writing a string into a Vec cannot fail.
    serde_json::to_writer(&mut *out, key).expect("a string serialises");
    out.push(b':');
}

/// An object of raw fields, in their order.
pub fn write_object<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (index, (key, value)) in fields.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_key(out, key);
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
}

// --- nesting ----------------------------------------------------------------------------------

/// How deep a JSON value nests: objects and arrays counted (a number is 0, `{}` and `[1]` are
/// 1). The text is not checked: this is about text a parse accepts, or will refuse anyway.
///
/// One pass over the bytes, most of it in strings, which are skipped to their closing quote
/// with `memchr` (a run log is mostly strings): a check of a whole run log costs a fraction of
/// reading it.
pub fn nesting(text: &str) -> usize {
    nesting_of_bytes(text.as_bytes())
}

/// [`nesting`] of bytes (UTF-8 or not: only ASCII punctuation counts).
pub fn nesting_of_bytes(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut at = 0usize;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => match string_end(bytes, at + 1) {
                Some(end) => at = end,
                None => return deepest,
            },
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    deepest
}

/// The offset of the quote that closes the string whose text starts at `at` (the next quote not
/// escaped). Most strings of a run log are short keys and values: they are walked byte by byte,
/// and `memchr` takes over past the first few dozen bytes, where it is faster.
fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    let short = bytes.len().min(at + 32);
    while at < short {
        match bytes[at] {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    loop {
        let found = memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[at + found] == b'"' {
            return Some(at + found);
        }
        at += found + 2;
    }
}

/// One step down a JSON value: into an object's member, or an array's item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a JSON value first nests deeper than `allowed` levels: the steps down the deepest
/// route to the value past the limit (the first of equally deep members); `None` when it
/// fits.
pub fn deepest_path(text: &str, allowed: usize) -> Option<Vec<Step>> {
    if nesting(text) <= allowed {
        return None;
    }
    let mut path = Vec::new();
    let mut value = text;
    let mut left = allowed;
    loop {
        if left == 0 {
            return Some(path);
        }
        left -= 1;
        let trimmed = value.trim_ascii();
        let children: Vec<(Step, &str)> = if trimmed.starts_with('{') {
            match parse_object(trimmed) {
                Ok(fields) => fields
                    .into_iter()
                    .map(|(key, raw)| (Step::Key(key.into_owned()), raw))
                    .collect(),
                Err(_) => return Some(path),
            }
        } else if trimmed.starts_with('[') {
            match parse_array(trimmed) {
                Some(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(index, raw)| (Step::Index(index), raw))
                    .collect(),
                None => return Some(path),
            }
        } else {
            return Some(path);
        };
        let mut deepest: Option<(Step, &str, usize)> = None;
        for (step, raw) in children {
            let depth = nesting(raw);
            if deepest.as_ref().map_or(true, |(_, _, d)| depth > *d) {
                deepest = Some((step, raw, depth));
            }
        }
        let Some((step, child, _)) = deepest else {
            return Some(path);
        };
        path.push(step);
        value = child;
    }
}

/// A path as a reader finds the place: `["parameters"]["p"]["value"][0]`, a long run of array
/// items shortened (`[0][0]... 117 arrays in`).
pub fn describe_path(path: &[Step]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while at < path.len() {
        match &path[at] {
            Step::Key(key) => {
                out.push('[');
                out.push_str(&serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}")));
                out.push(']');
                at += 1;
            }
            Step::Index(_) => {
                let run = path[at..]
                    .iter()
                    .take_while(|step| matches!(step, Step::Index(_)))
                    .count();
                if run > 4 {
                    for step in &path[at..at + 2] {
                        if let Step::Index(index) = step {
                            out.push_str(&format!("[{index}]"));
                        }
                    }
                    out.push_str(&format!("... {run} arrays in"));
                    at += run;
                } else {
                    for step in &path[at..at + run] {
                        if let Step::Index(index) = step {
                            out.push_str(&format!("[{index}]"));
                        }
                    }
                    at += run;
                }
            }
        }
    }
    out
}

/// The items of a JSON array as raw text, non-finite tokens included.
fn parse_array(text: &str) -> Option<Vec<&str>> {
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        return Some(items.into_iter().map(RawValue::get).collect());
    }
    let finite = with_finite_stand_ins(text)?;
    let items: Vec<&RawValue> = serde_json::from_str(&finite).ok()?;
    let base = finite.as_ptr() as usize;
    Some(
        items
            .into_iter()
            .map(|item| {
                let at = item.get().as_ptr() as usize - base;
                &text[at..at + item.get().len()]
            })
            .collect(),
    )
}

/// An object as `json.dumps` writes it, its keys as [`write_python_json_string`] writes them and
/// its values by `write`; `separators` as `json.dumps` takes them: `(", ", ": ")` by default,
/// `(",", ":")` compact.
pub fn write_python_json_object<K: AsRef<str>, V>(
    out: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (K, V)>,
    separators: (&[u8], &[u8]),
    mut write: impl FnMut(&mut Vec<u8>, V),
) {
    out.push(b'{');
    for (at, (key, value)) in entries.into_iter().enumerate() {
        if at > 0 {
            out.extend_from_slice(separators.0);
        }
        write_python_json_string(out, key.as_ref());
        out.extend_from_slice(separators.1);
        write(out, value);
    }
    out.push(b'}');
}

/// A string as `json.dumps` writes it (`ensure_ascii`): `"` and `\` escaped, the usual short
/// escapes, and every other byte outside printable ASCII as `\uXXXX` (lowercase hex, surrogate
/// pairs above U+FFFF).
pub fn write_python_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one pass gives what the top level and then the children's object give, in the
    /// same order, or declines text the two passes would read otherwise.
    #[test]
    fn a_document_and_its_children_read_in_one_pass_as_in_two() {
        type TwoPasses<'a> = (Vec<(String, String)>, Vec<ObjectFields<'a>>);
        fn two_passes(text: &str) -> Option<TwoPasses<'_>> {
            let fields = parse_object(text).ok()?;
            let (_, raw) = fields.iter().rev().find(|(k, _)| k == "steps")?;
            let children = parse_object_of_objects(raw)?;
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        if k == "steps" { "{}" } else { v }.to_string(),
                    )
                })
                .collect();
            Some((fields, children))
        }
        type ObjectFields<'a> = (Cow<'a, str>, Fields<'a>);
        for text in [
            r#"{"name": "b", "steps": {"s1": {"a": 1, "branches": {}}, "s2": {"x": [1, {"y": 2}]}}, "z": null}"#,
            r#"{"steps": {}, "a": "x\"y", "a": 2}"#,
            r#"{"st\u0065ps": {"s": {"k\u00e9": "v"}}, "after": true}"#,
            r#" { "steps" : { "s" : { } } } "#,
        ] {
            let one = parse_object_with_children(text, "steps").expect(text);
            let fields: Vec<(String, String)> = one
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let (expected_fields, expected_children) = two_passes(text).expect(text);
            assert_eq!(fields, expected_fields, "{text}");
            assert_eq!(one.children, expected_children, "{text}");
        }
        let no_children = parse_object_with_children(r#"{"a": 1}"#, "steps").unwrap();
        assert!(no_children.children.is_empty());
        for declined in [
            r#"{"steps": null}"#,
            r#"{"steps": {"s": 1}}"#,
            r#"{"steps": {}, "steps": {}}"#,
            r#"{"steps": {"s": {"m": NaN}}}"#,
            r#"{"a": 1} x"#,
            "",
            "[]",
        ] {
            assert!(
                parse_object_with_children(declined, "steps").is_none(),
                "{declined}"
            );
        }
    }

    #[test]
    fn fields_are_borrowed_in_order_with_duplicates() {
        let fields = parse_object(r#"{"a": 1, "b": {"c": [2]}, "a": "x\"y"}"#).unwrap();
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        assert_eq!(
            pairs,
            [("a", "1"), ("b", r#"{"c": [2]}"#), ("a", r#""x\"y""#)]
        );
        for (bad, says) in [
            ("", "it is empty"),
            ("[1]", "it is not a JSON object"),
            ("{\"a\":", "it is not valid JSON"),
            ("{\"a\": nan}", "it is not valid JSON"),
            ("{\"a\": -NaN}", "it is not valid JSON"),
            ("{\"a\": NaNa}", "it is not valid JSON"),
            ("{\"a\": 1NaN}", "it is not valid JSON"),
            ("{NaN: 1}", "it is not valid JSON"),
        ] {
            let err = parse_object(bad).unwrap_err();
            assert!(err.starts_with(says), "{bad}: {err}");
        }
    }

    #[test]
    fn non_finite_tokens_are_read_and_kept_as_written() {
        let text = "{\"a\": NaN, \"b\": [Infinity,-Infinity , 1.5], \"NaN\": \"NaN, Infinity\",\n\"c\":{\"d\":NaN}}";
        let fields = parse_object(text).unwrap();
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        assert_eq!(
            pairs,
            [
                ("a", "NaN"),
                ("b", "[Infinity,-Infinity , 1.5]"),
                ("NaN", "\"NaN, Infinity\""),
                ("c", "{\"d\":NaN}")
            ]
        );
        // Nested values are read the same way.
        assert_eq!(parse_object(pairs[3].1).unwrap()[0].1, "NaN");
        // Escaped keys come back decoded; the values still from the original.
        let fields = parse_object(r#"{"\u00e9": Infinity}"#).unwrap();
        assert_eq!((fields[0].0.as_ref(), fields[0].1), ("é", "Infinity"));
    }

    #[test]
    fn an_object_of_objects_is_read_in_one_pass_as_each_would_be_alone() {
        let text = r#"{"s1": {"a": 1, "b": {"c": [2]}}, "s2": {}, "s1": {"a": "x\"y"}}"#;
        let children = parse_object_of_objects(text).unwrap();
        let alone = parse_object(text).unwrap();
        assert_eq!(children.len(), alone.len());
        for ((key, fields), (alone_key, value)) in children.iter().zip(&alone) {
            assert_eq!(key, alone_key);
            assert_eq!(fields, &parse_object(value).unwrap());
        }
        // Anything else is left to the longer way, which reads it or says what is wrong.
        for other in [
            r#"{"s1": 1}"#,
            r#"{"s1": {"a": NaN}}"#,
            r#"{"s1": {"a": 1}"#,
            "[]",
        ] {
            assert!(parse_object_of_objects(other).is_none(), "{other}");
        }
    }

    #[test]
    fn nesting_counts_objects_and_arrays_outside_strings() {
        assert_eq!(nesting("1"), 0);
        assert_eq!(nesting("{}"), 1);
        assert_eq!(nesting(r#"{"a": [[1], {"b": "[[[["}]}"#), 3);
        assert_eq!(nesting(r#"["\"[", [NaN]]"#), 2);
    }

    #[test]
    fn the_deepest_place_is_named() {
        let text = r#"{"parameters": {"p": {"kind": "json", "value": [[[NaN]]], "d": [[[1]]]}}}"#;
        let place = |allowed| deepest_path(text, allowed).map(|path| describe_path(&path));
        assert_eq!(place(6), None);
        assert_eq!(
            place(5).as_deref(),
            Some(r#"["parameters"]["p"]["value"][0][0]"#)
        );
        assert_eq!(place(1).as_deref(), Some(r#"["parameters"]"#));
        let deep = format!("{{\"v\": {}1{}}}", "[".repeat(9), "]".repeat(9));
        assert_eq!(
            deepest_path(&deep, 9)
                .map(|path| describe_path(&path))
                .as_deref(),
            Some(r#"["v"][0][0]... 8 arrays in"#)
        );
    }

    #[test]
    fn objects_are_written_from_raw_fields() {
        let mut out = Vec::new();
        write_object(&mut out, [("a\"", "NaN"), ("b", "[1]")]);
        assert_eq!(out, br#"{"a\"":NaN,"b":[1]}"#);
    }
}

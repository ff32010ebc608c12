//! JSON values a summary hands out as they are (root parameters and metrics), read from the
//! stored text with Python's non-finite tokens (`NaN`, `Infinity`, `-Infinity`: see
//! `crate::json`) read as the floats Python reads them as. The text was checked as JSON by the
//! parse that found it, so this reader only has to take it apart.

/// A JSON value as Python's `json` reads it: integers of any size, floats, objects as their
/// (key, value) pairs in stored order with duplicates kept (a dict built from them keeps the
/// first place and the last value, as `json.loads` does).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer past 64 bits, as its digits.
    BigInt(String),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Python's truth of the value.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::BigInt(_) => true,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Array(items) => !items.is_empty(),
            Value::Object(fields) => !fields.is_empty(),
        }
    }

    /// Python's `str()` of a scalar; `None` for a list or an object (their `str()` is Python's
    /// repr of them, which a summary does not write).
    pub fn python_str(&self) -> Option<String> {
        Some(match self {
            Value::Null => "None".to_string(),
            Value::Bool(true) => "True".to_string(),
            Value::Bool(false) => "False".to_string(),
            Value::Int(i) => i.to_string(),
            Value::BigInt(digits) => digits.clone(),
            Value::Float(f) => crate::summary::document::python_float_repr(*f),
            Value::Str(s) => s.clone(),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }

    fn python_type(&self) -> &'static str {
        match self {
            Value::Array(_) => "list",
            Value::Object(_) => "dict",
            _ => "scalar",
        }
    }

    /// `str()` of the value, a list or an object named by its type.
    pub fn text(&self) -> String {
        self.python_str()
            .unwrap_or_else(|| format!("<a JSON {}>", self.python_type()))
    }
}

/// The value of a checked JSON text; `None` for text that is not one (never for what a parse
/// accepted).
pub fn parse_value(text: &str) -> Option<Value> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        at: 0,
    };
    let value = reader.value()?;
    reader.blanks();
    (reader.at == reader.bytes.len()).then_some(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn blanks(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.bytes[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.blanks();
        match *self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                self.blanks();
                if self.eat("}") {
                    return Some(Value::Object(fields));
                }
                loop {
                    self.blanks();
                    let key = self.string()?;
                    self.blanks();
                    if !self.eat(":") {
                        return None;
                    }
                    let value = self.value()?;
                    fields.push((key, value));
                    self.blanks();
                    if self.eat("}") {
                        return Some(Value::Object(fields));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.blanks();
                if self.eat("]") {
                    return Some(Value::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.blanks();
                    if self.eat("]") {
                        return Some(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(Value::Str),
            b't' if self.eat("true") => Some(Value::Bool(true)),
            b'f' if self.eat("false") => Some(Value::Bool(false)),
            b'n' if self.eat("null") => Some(Value::Null),
            b'N' if self.eat("NaN") => Some(Value::Float(f64::NAN)),
            b'I' if self.eat("Infinity") => Some(Value::Float(f64::INFINITY)),
            b'-' if self.eat("-Infinity") => Some(Value::Float(f64::NEG_INFINITY)),
            _ => self.number(),
        }
    }

    fn string(&mut self) -> Option<String> {
        let start = self.at;
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut escaped = false;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.at += 2;
                }
                _ => self.at += 1,
            }
        }
        self.at += 1;
        let quoted = &self.text[start..self.at];
        if escaped {
            serde_json::from_str(quoted).ok()
        } else {
            Some(quoted[1..quoted.len() - 1].to_string())
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        while matches!(
            self.bytes.get(self.at),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.at += 1;
        }
        let digits = &self.text[start..self.at];
        if digits.is_empty() {
            return None;
        }
        if digits.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            // Rust's parse rounds correctly, as Python's float() does.
            return digits.parse().ok().map(Value::Float);
        }
        Some(match digits.parse::<i64>() {
            Ok(int) => Value::Int(int),
            Err(_) => Value::BigInt(digits.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_python_reads_them() {
        let value = parse_value(
            r#" {"a": [1, -2.5e3, NaN, Infinity, -Infinity, null, true, false],
                "b\n": "x\"y", "a": 123456789012345678901234567890, "c": {}, "d": []} "#,
        )
        .unwrap();
        let Value::Object(fields) = value else {
            panic!("{value:?}")
        };
        assert_eq!(fields.len(), 5);
        let Value::Array(items) = &fields[0].1 else {
            panic!()
        };
        assert_eq!(items[0], Value::Int(1));
        assert_eq!(items[1], Value::Float(-2500.0));
        assert!(matches!(items[2], Value::Float(f) if f.is_nan()));
        assert_eq!(items[3], Value::Float(f64::INFINITY));
        assert_eq!(items[4], Value::Float(f64::NEG_INFINITY));
        assert_eq!(
            &items[5..],
            [Value::Null, Value::Bool(true), Value::Bool(false)]
        );
        assert_eq!(fields[1], ("b\n".into(), Value::Str("x\"y".into())));
        assert_eq!(
            fields[2].1,
            Value::BigInt("123456789012345678901234567890".into())
        );
        assert_eq!(fields[3].1, Value::Object(vec![]));
        assert_eq!(fields[4].1, Value::Array(vec![]));
        assert_eq!(parse_value("-0"), Some(Value::Int(0)));
        assert_eq!(parse_value("1E2"), Some(Value::Float(100.0)));
        assert_eq!(parse_value("[1,]"), None);
        assert_eq!(parse_value("1 2"), None);
    }
}

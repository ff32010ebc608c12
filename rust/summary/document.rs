//! The parts of a run log a summary reads, taken from its JSON in one pass with serde: the
//! run's fields, and of every step, branch, attempt and code identity the few fields a summary
//! needs; everything else is skipped unparsed. Every field is read whatever JSON it holds, as
//! the Python summary read the dicts of `json.loads` (a field of the wrong type counts as
//! what Python made of it, never as an error), and a key given twice counts by its last value,
//! as in `json.loads`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A field's JSON value, as much of it as a summary looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Loose<'a> {
    #[default]
    Absent,
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A list of so many items.
    Array(usize),
    /// An object of so many distinct keys.
    Object(usize),
}

impl Loose<'_> {
    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The JSON type's name in Python (`type(value).__name__`).
    pub fn python_type(&self) -> &'static str {
        match self {
            Loose::Absent | Loose::Null => "NoneType",
            Loose::Bool(_) => "bool",
            Loose::Int(_) | Loose::UInt(_) => "int",
            Loose::Float(_) => "float",
            Loose::Str(_) => "str",
            Loose::Array(_) => "list",
            Loose::Object(_) => "dict",
        }
    }
}

/// Python's `repr()` of a float: the shortest digits that read back, in exponent form below
/// 1e-4 and from 1e16 on. The digits are formatted once (`{:e}`, Rust's shortest round-trip
/// digits, the same as Python's) and placed around the point here: an index build writes this
/// for every number of every run's summary.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_string();
    }
    let exp_form = format!("{value:e}"); // shortest digits: "1.5e-7", "-1e16"
    let (mantissa, exponent) = exp_form.split_once('e').unwrap_or((&exp_form, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..16).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let (sign, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let mut out = String::with_capacity(sign.len() + unsigned.len() + 20);
    out.push_str(sign);
    let (first, rest) = unsigned.split_at(1); // "1.2345": one digit before the point
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    if exponent < 0 {
        // 0.000ddd: the point, then zeros up to the first digit.
        out.push_str("0.");
        out.extend(std::iter::repeat('0').take((-exponent - 1) as usize));
        out.push_str(first);
        out.push_str(rest);
    } else {
        let whole = exponent as usize; // digits after the first that come before the point
        out.push_str(first);
        if rest.len() > whole {
            out.push_str(&rest[..whole]);
            out.push('.');
            out.push_str(&rest[whole..]);
        } else {
            out.push_str(rest);
            out.extend(std::iter::repeat('0').take(whole - rest.len()));
            out.push_str(".0");
        }
    }
    out
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Loose::Array(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
                let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.insert(key.0);
                }
                Ok(Loose::Object(keys.len()))
            }
        }
        deserializer.deserialize_any(LooseVisitor)
    }
}

/// A field's JSON text, for fields Python turns into text with `str()` (step names, code
/// identifiers), whatever JSON they hold: an integer past 64 bits keeps its digits, which a
/// number read by serde would not.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Raw<'a>(pub Option<&'a str>);

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(|raw| Raw(Some(raw.get())))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::json::Text::deserialize(deserializer).map(|text| Key(text.0))
    }
}

/// An object's entries as `json.loads` keeps them: each key once, at the place of its first
/// appearance, with its last value.
pub type Entries<'a, T> = Vec<(Cow<'a, str>, T)>;

fn dedupe<T>(entries: &mut Entries<'_, T>) {
    if entries.len() < 2 {
        return;
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
    if entries.iter().all(|(key, _)| seen.insert(key.as_ref())) {
        return; // the common case: no key twice
    }
    let mut kept: Entries<'_, T> = Vec::with_capacity(entries.len());
    let mut place: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (key, value) in entries.drain(..) {
        match place.get(key.as_ref()) {
            Some(&at) => kept[at].1 = value,
            None => {
                place.insert(key.to_string(), kept.len());
                kept.push((key, value));
            }
        }
    }
    *entries = kept;
}

/// A visitor of a JSON object whose fields are read by `field` (anything else is skipped),
/// any other JSON value giving `T::default()`-like "not an object" (`None`).
macro_rules! object_or_none {
    ($name:ident, $target:ident, |$this:ident, $key:ident, $map:ident| $body:block) => {
        impl<'de> Deserialize<'de> for $name<'de> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("any JSON value")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut $map: A,
                    ) -> Result<$name<'de>, A::Error> {
                        let mut $this = $target::default();
                        while let Some(Key($key)) = $map.next_key::<Key<'de>>()? $body
                        Ok($name(Some($this)))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$name<'de>, A::Error> {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok($name(None))
                    }
                    fn visit_unit<E>(self) -> Result<$name<'de>, E> { Ok($name(None)) }
                    fn visit_bool<E>(self, _: bool) -> Result<$name<'de>, E> { Ok($name(None)) }
                    fn visit_i64<E>(self, _: i64) -> Result<$name<'de>, E> { Ok($name(None)) }
                    fn visit_u64<E>(self, _: u64) -> Result<$name<'de>, E> { Ok($name(None)) }
                    fn visit_f64<E>(self, _: f64) -> Result<$name<'de>, E> { Ok($name(None)) }
                    fn visit_str<E>(self, _: &str) -> Result<$name<'de>, E> { Ok($name(None)) }
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

/// A list's items read as `T` (each `None` when not what `T` reads); `None` when not a list.
pub struct List<T>(pub Option<Vec<T>>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(item) = seq.next_element::<T>()? {
                    items.push(item);
                }
                Ok(List(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(List(None))
            }
            fn visit_unit<E>(self) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<List<T>, E> {
                Ok(List(None))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An object's entries read as `T`, or what else the value is (for `len()` of a field that is
/// not an object).
pub enum Map<'a, T> {
    Object(Entries<'a, T>),
    Other(Loose<'a>),
}

impl<T> Default for Map<'_, T> {
    fn default() -> Self {
        Map::Other(Loose::Absent)
    }
}

impl<'a, T> Map<'a, T> {
    pub fn entries(&self) -> &[(Cow<'a, str>, T)] {
        match self {
            Map::Object(entries) => entries,
            Map::Other(_) => &[],
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Map<'de, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Map<'de, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Map<'de, T>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    entries.push((key, map.next_value::<T>()?));
                }
                dedupe(&mut entries);
                Ok(Map::Object(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Map<'de, T>, A::Error> {
                LooseVisitorProxy.visit_seq(seq).map(Map::Other)
            }
            fn visit_unit<E>(self) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::UInt(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::Float(v)))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Map<'de, T>, E> {
                Ok(Map::Other(Loose::Str(Cow::Owned(v.to_owned()))))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Counts a list's items for [`Map::Other`].
struct LooseVisitorProxy;

impl LooseVisitorProxy {
    fn visit_seq<'de, A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Loose::Array(n))
    }
}

// --- the parts of a run log -------------------------------------------------------------------

/// A code identity: only its identifier counts.
#[derive(Default)]
pub struct IdentityFields<'a> {
    pub code_identifier: Raw<'a>,
}
pub struct Identity<'a>(pub Option<IdentityFields<'a>>);
object_or_none!(Identity, IdentityFields, |this, key, map| {
    if key == "code_identifier" {
        this.code_identifier = map.next_value()?;
    } else {
        map.next_value::<IgnoredAny>()?;
    }
});

/// The code identifiers of a `code_identities` list, in order (the caller takes the first
/// Python finds true).
pub fn identifiers<'l, 'a>(list: &'l List<Identity<'a>>) -> impl Iterator<Item = &'a str> + 'l {
    list.0
        .iter()
        .flatten()
        .filter_map(|identity| identity.0.as_ref())
        .filter_map(|fields| fields.code_identifier.0)
}

#[derive(Default)]
pub struct AttemptFields<'a> {
    pub start_time: Loose<'a>,
    pub end_time: Loose<'a>,
    pub code_identities: Option<List<Identity<'a>>>,
}
pub struct Attempt<'a>(pub Option<AttemptFields<'a>>);
object_or_none!(Attempt, AttemptFields, |this, key, map| {
    match key.as_ref() {
        "start_time" => this.start_time = map.next_value()?,
        "end_time" => this.end_time = map.next_value()?,
        "code_identities" => this.code_identities = Some(map.next_value()?),
        _ => {
            map.next_value::<IgnoredAny>()?;
        }
    }
});

/// A step (or the job, which has the same fields a summary reads).
#[derive(Default)]
pub struct StepFields<'a> {
    pub internal_name: Raw<'a>,
    pub name: Raw<'a>,
    pub status: Loose<'a>,
    pub attempts: Option<List<Attempt<'a>>>,
    pub code_identities: Option<List<Identity<'a>>>,
    pub branches: Map<'a, Branch<'a>>,
}
#[derive(Default)]
pub struct Step<'a>(pub Option<StepFields<'a>>);
object_or_none!(Step, StepFields, |this, key, map| {
    match key.as_ref() {
        "internal_name" => this.internal_name = map.next_value()?,
        "name" => this.name = map.next_value()?,
        "status" => this.status = map.next_value()?,
        "attempts" => this.attempts = Some(map.next_value()?),
        "code_identities" => this.code_identities = Some(map.next_value()?),
        "branches" => this.branches = map.next_value()?,
        _ => {
            map.next_value::<IgnoredAny>()?;
        }
    }
});

impl<'a> StepFields<'a> {
    pub fn attempts(&self) -> impl Iterator<Item = &AttemptFields<'a>> {
        self.attempts
            .iter()
            .flat_map(|list| list.0.iter().flatten())
            .filter_map(|attempt| attempt.0.as_ref())
    }
}

#[derive(Default)]
pub struct BranchFields<'a> {
    pub status: Loose<'a>,
    pub steps: Map<'a, Step<'a>>,
}
pub struct Branch<'a>(pub Option<BranchFields<'a>>);
object_or_none!(Branch, BranchFields, |this, key, map| {
    match key.as_ref() {
        "status" => this.status = map.next_value()?,
        "steps" => this.steps = map.next_value()?,
        _ => {
            map.next_value::<IgnoredAny>()?;
        }
    }
});

/// A root parameter: its kind, its value's JSON text, and its description (an object
/// parameter's must be a string or null for the models).
#[derive(Default)]
pub struct ParameterFields<'a> {
    pub kind: Loose<'a>,
    pub value: Option<&'a str>,
    pub value_is_string: bool,
    pub description: Loose<'a>,
}
pub struct Parameter<'a>(pub Option<ParameterFields<'a>>);
object_or_none!(Parameter, ParameterFields, |this, key, map| {
    match key.as_ref() {
        "kind" => this.kind = map.next_value()?,
        "value" => {
            let raw: &'de RawValue = map.next_value()?;
            this.value_is_string = raw.get().starts_with('"');
            this.value = Some(raw.get());
        }
        "description" => this.description = map.next_value()?,
        _ => {
            map.next_value::<IgnoredAny>()?;
        }
    }
});

/// The run: its own fields, its steps and its job.
#[derive(Default)]
pub struct RunFields<'a> {
    pub run_id: Loose<'a>,
    pub status: Loose<'a>,
    pub tag: Loose<'a>,
    pub dag_hash: Loose<'a>,
    pub run_config: Loose<'a>,
    pub steps: Map<'a, Step<'a>>,
    pub job: Step<'a>,
    pub parameters: Map<'a, Parameter<'a>>,
}

/// A run log's top level: the run, or (`None`) the JSON type it is instead of an object.
pub struct Run<'a>(pub Result<RunFields<'a>, Loose<'a>>);

impl<'de> Deserialize<'de> for Run<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Run<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Run<'de>, A::Error> {
                let mut this = RunFields::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "run_id" => this.run_id = map.next_value()?,
                        "status" => this.status = map.next_value()?,
                        "tag" => this.tag = map.next_value()?,
                        "dag_hash" => this.dag_hash = map.next_value()?,
                        "run_config" => this.run_config = map.next_value()?,
                        "steps" => this.steps = map.next_value()?,
                        "job" => this.job = map.next_value()?,
                        "parameters" => this.parameters = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Run(Ok(this)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Run<'de>, A::Error> {
                LooseVisitorProxy.visit_seq(seq).map(|l| Run(Err(l)))
            }
            fn visit_unit<E>(self) -> Result<Run<'de>, E> {
                Ok(Run(Err(Loose::Null)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Run<'de>, E> {
                Ok(Run(Err(Loose::Bool(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Run<'de>, E> {
                Ok(Run(Err(Loose::Int(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Run<'de>, E> {
                Ok(Run(Err(Loose::UInt(v))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Run<'de>, E> {
                Ok(Run(Err(Loose::Float(v))))
            }
            fn visit_str<E>(self, _: &str) -> Result<Run<'de>, E> {
                Ok(Run(Err(Loose::Str(Cow::Borrowed("")))))
            }
        }
        deserializer.deserialize_any(V)
    }
}

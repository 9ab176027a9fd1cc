//! A walker over one TOML table (as read by the `config` crate) that knows the dotted path
//! of every key, type-checks strictly and reports keys nobody asked for as unknown.

use crate::error::PolicyError;
use config::{Map, Value, ValueKind};
use std::collections::BTreeMap;

pub(crate) type Result<T> = std::result::Result<T, PolicyError>;

/// One table of a policy file, e.g. `interleave` or `monitor.rules[1]`.
pub(crate) struct Section<'f> {
    file: &'f str,
    path: String,
    table: Map<String, Value>,
    known: Vec<&'static str>,
}

fn kind_name(v: &Value) -> &'static str {
    match v.kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "an integer"
        }
        ValueKind::Float(_) => "a float",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "an array",
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    match v.kind {
        ValueKind::I64(i) => Some(i128::from(i)),
        ValueKind::I128(i) => Some(i),
        ValueKind::U64(u) => Some(i128::from(u)),
        ValueKind::U128(u) => i128::try_from(u).ok(),
        _ => None,
    }
}

impl<'f> Section<'f> {
    pub(crate) fn root(file: &'f str, table: Map<String, Value>) -> Section<'f> {
        Section {
            file,
            path: String::new(),
            table,
            known: Vec::new(),
        }
    }

    /// The dotted path of `key` in this section.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error about `key` of this section.
    pub(crate) fn err(&self, key: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::invalid(self.file, &self.key_path(key), message)
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    fn type_err(&self, key: &str, want: &str, got: &Value) -> PolicyError {
        self.err(key, format!("must be {want}, got {}", kind_name(got)))
    }

    pub(crate) fn f64(&mut self, key: &'static str) -> Result<Option<f64>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.kind {
            ValueKind::Float(f) if f.is_finite() => Ok(Some(f)),
            ValueKind::Float(f) => Err(self.err(key, format!("must be a finite number, got {f}"))),
            _ => match as_i128(&v) {
                Some(i) => Ok(Some(i as f64)),
                None => Err(self.type_err(key, "a number", &v)),
            },
        }
    }

    pub(crate) fn u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match as_i128(&v) {
            Some(i) => u64::try_from(i)
                .map(Some)
                .map_err(|_| self.err(key, format!("must be a non-negative integer, got {i}"))),
            None => Err(self.type_err(key, "a non-negative integer", &v)),
        }
    }

    pub(crate) fn u32(&mut self, key: &'static str) -> Result<Option<u32>> {
        match self.u64(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.err(key, format!("must be at most {}, got {n}", u32::MAX))),
        }
    }

    pub(crate) fn i64(&mut self, key: &'static str) -> Result<Option<i64>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match as_i128(&v).and_then(|i| i64::try_from(i).ok()) {
            Some(i) => Ok(Some(i)),
            None => Err(self.type_err(key, "an integer", &v)),
        }
    }

    pub(crate) fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.kind {
            ValueKind::Boolean(b) => Ok(Some(b)),
            _ => Err(self.type_err(key, "a boolean", &v)),
        }
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Result<Option<String>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.kind {
            ValueKind::String(s) => Ok(Some(s)),
            _ => Err(self.type_err(key, "a string", &v)),
        }
    }

    /// A string that must not be empty or blank.
    pub(crate) fn text(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.string(key)? {
            Some(s) if s.trim().is_empty() => Err(self.err(key, "must not be empty")),
            other => Ok(other),
        }
    }

    /// One of a fixed set of names, e.g. `method = "plusplus"`.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        options: &[(&str, T)],
    ) -> Result<Option<T>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        match options.iter().find(|(name, _)| *name == s) {
            Some((_, t)) => Ok(Some(*t)),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                Err(self.err(
                    key,
                    format!("must be one of {}, got \"{s}\"", names.join(", ")),
                ))
            }
        }
    }

    fn array(&mut self, key: &'static str) -> Result<Option<Vec<Value>>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.kind {
            ValueKind::Array(a) => Ok(Some(a)),
            _ => Err(self.type_err(key, "an array", &v)),
        }
    }

    pub(crate) fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.into_iter().enumerate() {
            match v.kind {
                ValueKind::String(s) if !s.trim().is_empty() => out.push(s),
                ValueKind::String(_) => {
                    return Err(self.err(&format!("{key}[{i}]"), "must not be empty"))
                }
                _ => return Err(self.type_err(&format!("{key}[{i}]"), "a string", &v)),
            }
        }
        Ok(Some(out))
    }

    pub(crate) fn u32s(&mut self, key: &'static str) -> Result<Option<Vec<u32>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.into_iter().enumerate() {
            match as_i128(&v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => out.push(n),
                None => {
                    return Err(self.type_err(&format!("{key}[{i}]"), "a non-negative integer", &v))
                }
            }
        }
        Ok(Some(out))
    }

    /// A table of string values, e.g. `metadata = { team = "med" }`.
    pub(crate) fn string_map(
        &mut self,
        key: &'static str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        let Some(mut sub) = self.section(key)? else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (k, v) in std::mem::take(&mut sub.table) {
            match v.kind {
                ValueKind::String(s) => {
                    out.insert(k, s);
                }
                _ => return Err(sub.type_err(&k, "a string", &v)),
            }
        }
        Ok(Some(out))
    }

    /// A sub-table, e.g. `[interleave]`.
    pub(crate) fn section(&mut self, key: &'static str) -> Result<Option<Section<'f>>> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.kind {
            ValueKind::Table(table) => Ok(Some(Section {
                file: self.file,
                path: self.key_path(key),
                table,
                known: Vec::new(),
            })),
            _ => Err(self.type_err(key, "a table", &v)),
        }
    }

    /// An array of tables, e.g. `[[monitor.rules]]`.
    pub(crate) fn sections(&mut self, key: &'static str) -> Result<Option<Vec<Section<'f>>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.into_iter().enumerate() {
            let path = format!("{key}[{i}]");
            match v.kind {
                ValueKind::Table(table) => out.push(Section {
                    file: self.file,
                    path: self.key_path(&path),
                    table,
                    known: Vec::new(),
                }),
                _ => return Err(self.type_err(&path, "a table", &v)),
            }
        }
        Ok(Some(out))
    }

    /// Fails on the first (alphabetically) key that no getter asked for.
    pub(crate) fn finish(self) -> Result<()> {
        let Some(unknown) = self.table.keys().min() else {
            return Ok(());
        };
        let mut known = self.known.clone();
        known.sort_unstable();
        known.dedup();
        let message = if known.is_empty() {
            "unknown key (this table takes no keys here)".to_string()
        } else {
            format!("unknown key (expected one of: {})", known.join(", "))
        };
        Err(self.err(unknown, message))
    }
}

//! Reading and writing a connector's `Config` object in pydatahub's field names: the helpers
//! every sink's `from_wire` / `to_wire` use, and [`ConfigError`], the one error they return.
//!
//! Message style, for every type and field: `Config.<Field> <problem>`, e.g.
//! `Config.Port must be a port number (1-65535), got "99999"`.

use serde_json::{Map, Value as Json};

use super::secret::Secret;

/// A configuration the API refuses, naming the field (empty for the object as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Config{}{} {problem}", if field.is_empty() { "" } else { "." }, field)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// The fields of a request's (or the meta store's) `Config` object.
pub struct Fields<'a>(&'a Map<String, Json>);

impl<'a> Fields<'a> {
    pub fn of(config: &'a Json) -> Result<Fields<'a>> {
        config
            .as_object()
            .map(Fields)
            .ok_or_else(|| ConfigError::new("", "must be a JSON object"))
    }

    pub fn get(&self, key: &str) -> Option<&'a Json> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A string (numbers and booleans are taken as their text); absent or null → None.
    pub fn text(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ConfigError::new(key, "must be a string")),
        }
    }

    /// A required, non-empty string.
    pub fn required(&self, key: &str) -> Result<String> {
        match self.text(key)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ConfigError::new(key, "is missing or empty")),
        }
    }

    /// An optional string; absent → "".
    pub fn optional(&self, key: &str) -> Result<String> {
        Ok(self.text(key)?.unwrap_or_default())
    }

    pub fn secret(&self, key: &str) -> Result<Secret> {
        Ok(Secret::new(self.optional(key)?))
    }

    /// One of `E`'s wire names, case-insensitive; absent or empty → `default` (None: required).
    pub fn choice<E: Choice>(&self, key: &str, default: Option<E>) -> Result<E> {
        let names = || E::ALL.iter().map(|e| e.wire()).collect::<Vec<_>>();
        let Some(raw) = self.text(key)?.filter(|v| !v.is_empty()) else {
            return default.ok_or_else(|| {
                ConfigError::new(key, format!("is missing (one of {:?})", names()))
            });
        };
        E::ALL
            .iter()
            .copied()
            .find(|e| e.wire().eq_ignore_ascii_case(&raw))
            .ok_or_else(|| {
                ConfigError::new(key, format!("must be one of {:?}, got {raw:?}", names()))
            })
    }

    /// A positive integer, given as a number or a string holding one.
    pub fn positive_int(&self, key: &str) -> Result<Option<i64>> {
        let n = match self.get(key) {
            None => return Ok(None),
            Some(Json::Number(n)) => n.as_i64(),
            Some(Json::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(ConfigError::new(key, "must be a positive integer")),
        }
    }

    /// `true` / `false`, as a boolean or a string; absent → `default`.
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(Json::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
            Some(Json::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(ConfigError::new(key, "must be \"true\" or \"false\"")),
        }
    }

    /// A TCP port, as a string (`"3306"`, what pydatahub sends) or a number.
    pub fn port(&self, key: &str) -> Result<u16> {
        let raw = self.required(key)?;
        match raw.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(ConfigError::new(
                key,
                format!("must be a port number (1-65535), got {raw:?}"),
            )),
        }
    }

    /// A list of names: a JSON array of strings, or a string holding one.
    pub fn name_list(&self, key: &str) -> Result<Vec<String>> {
        let bad = || ConfigError::new(key, "must be a JSON array of field names");
        let parsed = match self.get(key) {
            None => return Ok(vec![]),
            Some(Json::String(s)) if s.trim().is_empty() => return Ok(vec![]),
            Some(Json::String(s)) => serde_json::from_str(s).map_err(|_| bad())?,
            Some(v) => v.clone(),
        };
        parsed
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(bad)
    }
}

/// A closed set of wire names (an enum field of a config).
pub trait Choice: Copy + 'static {
    const ALL: &'static [Self];
    fn wire(self) -> &'static str;
}

/// Builds a `Config` object for `to_wire`.
#[derive(Default)]
pub struct Out(Map<String, Json>);

impl Out {
    pub fn str(mut self, key: &str, value: &str) -> Out {
        self.0.insert(key.into(), Json::String(value.to_string()));
        self
    }

    /// Only when non-empty.
    pub fn str_if(self, key: &str, value: &str) -> Out {
        if value.is_empty() {
            self
        } else {
            self.str(key, value)
        }
    }

    pub fn int(mut self, key: &str, value: Option<i64>) -> Out {
        if let Some(v) = value {
            self.0.insert(key.into(), Json::from(v));
        }
        self
    }

    /// `"true"` / `"false"`, what pydatahub parses back.
    pub fn boolean(self, key: &str, value: bool) -> Out {
        self.str(key, if value { "true" } else { "false" })
    }

    /// A string holding a JSON array (what pydatahub parses back).
    pub fn name_list(self, key: &str, names: &[String]) -> Out {
        let text = Json::from(names.to_vec()).to_string();
        self.str(key, &text)
    }

    pub fn done(self) -> Json {
        Json::Object(self.0)
    }
}

/// `AuthMode` of the cloud sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Ak,
    Sts,
}

impl Choice for AuthMode {
    const ALL: &'static [AuthMode] = &[AuthMode::Ak, AuthMode::Sts];
    fn wire(self) -> &'static str {
        match self {
            AuthMode::Ak => "ak",
            AuthMode::Sts => "sts",
        }
    }
}

/// `AuthMode` with its `AccessId` / `AccessKey` (given together or not at all in `ak` mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub mode: AuthMode,
    pub access_id: String,
    pub access_key: Secret,
}

impl Auth {
    pub fn from_wire(f: &Fields, default: AuthMode) -> Result<Auth> {
        let mode = f.choice("AuthMode", Some(default))?;
        let access_id = f.optional("AccessId")?;
        let access_key = f.secret("AccessKey")?;
        if mode == AuthMode::Ak && access_id.is_empty() != access_key.is_empty() {
            return Err(ConfigError::new(
                "AccessId",
                "and Config.AccessKey must be given together",
            ));
        }
        Ok(Auth {
            mode,
            access_id,
            access_key,
        })
    }

    pub fn to_wire(&self, out: Out) -> Out {
        out.str("AuthMode", self.mode.wire())
            .str_if("AccessId", &self.access_id)
            .str_if("AccessKey", self.access_key.expose())
    }
}

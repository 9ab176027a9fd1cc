//! Pure validation of a job-creation body: every field checked, each rejection naming its
//! parameter, as OpenAI's API does.

use crate::error::ApiError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const KNOWN: [&str; 9] = [
    "model",
    "training_file",
    "validation_file",
    "hyperparameters",
    "method",
    "suffix",
    "seed",
    "metadata",
    "integrations",
];

/// Validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub model: String,
    pub training_file: String,
    pub validation_file: Option<String>,
    pub hyperparameters: Value,
    pub suffix: Option<String>,
    pub seed: Option<i64>,
    pub metadata: Option<BTreeMap<String, String>>,
}

fn req_str(body: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::invalid(
            key,
            format!("Missing required parameter: '{key}'."),
        )),
        _ => Err(ApiError::invalid(
            key,
            format!("'{key}' must be a non-empty string."),
        )),
    }
}

fn opt_str(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(ApiError::invalid(key, format!("'{key}' must be a string."))),
    }
}

/// Checks one hyperparameter object and fills unset values with "auto".
fn hyperparameters(v: Option<&Value>, param: &str) -> Result<Value, ApiError> {
    let mut out =
        json!({"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"});
    let obj = match v {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                format!("'{param}' must be an object."),
            ))
        }
    };
    for (k, val) in obj {
        let p = format!("{param}.{k}");
        let ok = match (k.as_str(), val) {
            (_, Value::String(s)) if s == "auto" => true,
            ("batch_size", v) => v.as_i64().is_some_and(|n| (1..=256).contains(&n)),
            ("n_epochs", v) => v.as_i64().is_some_and(|n| (1..=50).contains(&n)),
            ("learning_rate_multiplier", v) => v.as_f64().is_some_and(|x| x > 0.0 && x <= 10.0),
            _ => {
                return Err(ApiError::invalid(
                    p,
                    format!("Unrecognized hyperparameter '{k}'."),
                ))
            }
        };
        if !ok {
            let range = match k.as_str() {
                "batch_size" => "an integer in 1..=256",
                "n_epochs" => "an integer in 1..=50",
                _ => "a number in (0, 10]",
            };
            return Err(ApiError::invalid(
                p,
                format!("'{k}' must be \"auto\" or {range}."),
            ));
        }
        out[k.as_str()] = val.clone();
    }
    Ok(out)
}

/// Pure validation of the request body (file existence is checked by the handler).
pub fn validate(body: &Value) -> Result<CreateRequest, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("The request body must be a JSON object."))?;
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            k.as_str(),
            format!("Unrecognized request argument supplied: {k}"),
        ));
    }
    let model = req_str(obj, "model")?;
    let training_file = req_str(obj, "training_file")?;
    let validation_file = opt_str(obj, "validation_file")?;
    let mut hp = hyperparameters(obj.get("hyperparameters"), "hyperparameters")?;
    match obj.get("method") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            match m.get("type").and_then(Value::as_str) {
                Some("supervised") => {}
                Some(t @ ("dpo" | "reinforcement")) => {
                    return Err(ApiError::invalid(
                        "method.type",
                        format!("Method type '{t}' is not supported by this gateway yet; only 'supervised' is."),
                    ))
                }
                Some(t) => return Err(ApiError::invalid("method.type", format!("Invalid method type '{t}': expected 'supervised'."))),
                None => return Err(ApiError::invalid("method.type", "Missing required parameter: 'method.type'.")),
            }
            if let Some(k) = m
                .keys()
                .find(|k| !["type", "supervised"].contains(&k.as_str()))
            {
                return Err(ApiError::invalid(
                    format!("method.{k}"),
                    format!("'method.{k}' is not valid for method type 'supervised'."),
                ));
            }
            if let Some(s) = m.get("supervised").filter(|s| !s.is_null()) {
                let so = s.as_object().ok_or_else(|| {
                    ApiError::invalid(
                        "method.supervised",
                        "'method.supervised' must be an object.",
                    )
                })?;
                if let Some(k) = so.keys().find(|k| k.as_str() != "hyperparameters") {
                    return Err(ApiError::invalid(
                        format!("method.supervised.{k}"),
                        format!("Unrecognized argument 'method.supervised.{k}'."),
                    ));
                }
                if let Some(h) = so.get("hyperparameters").filter(|h| !h.is_null()) {
                    if obj.get("hyperparameters").is_some_and(|x| !x.is_null()) {
                        return Err(ApiError::invalid("hyperparameters", "Specify hyperparameters either at the top level or in method.supervised, not both."));
                    }
                    hp = hyperparameters(Some(h), "method.supervised.hyperparameters")?;
                }
            }
        }
        Some(_) => return Err(ApiError::invalid("method", "'method' must be an object.")),
    }
    let suffix = opt_str(obj, "suffix")?;
    if let Some(s) = &suffix {
        if s.chars().count() > 64 {
            return Err(ApiError::invalid(
                "suffix",
                "'suffix' must be at most 64 characters.",
            ));
        }
        // The suffix is a field of `ft:{model}:{org}:{suffix}:{id}`: a `:` would make the
        // name ambiguous.
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ApiError::invalid(
                "suffix",
                format!(
                    "'suffix' may contain only letters, digits, '-', '_' and '.'; found {c:?}."
                ),
            ));
        }
    }
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|n| (0..=2_147_483_647).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "seed",
                        "'seed' must be an integer between 0 and 2147483647.",
                    )
                })?,
        ),
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(ApiError::invalid(
                    "metadata",
                    "'metadata' can have at most 16 key-value pairs.",
                ));
            }
            let mut out = BTreeMap::new();
            for (k, v) in m {
                if k.is_empty() || k.chars().count() > 64 {
                    return Err(ApiError::invalid(
                        format!("metadata.{k}"),
                        "Metadata keys must be 1-64 characters.",
                    ));
                }
                let s = v.as_str().ok_or_else(|| {
                    ApiError::invalid(format!("metadata.{k}"), "Metadata values must be strings.")
                })?;
                if s.chars().count() > 512 {
                    return Err(ApiError::invalid(
                        format!("metadata.{k}"),
                        "Metadata values must be at most 512 characters.",
                    ));
                }
                out.insert(k.clone(), s.to_string());
            }
            Some(out)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "metadata",
                "'metadata' must be an object of string values.",
            ))
        }
    };
    match obj.get("integrations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "integrations",
                "Integrations are not supported by this gateway.",
            ))
        }
    }
    Ok(CreateRequest {
        model,
        training_file,
        validation_file,
        hyperparameters: hp,
        suffix,
        seed,
        metadata,
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    fn err_param(body: Value) -> String {
        validate(&body).unwrap_err().param.unwrap_or_default()
    }

    #[test]
    fn valid_body_resolves_hyperparameters() {
        let r = validate(&json!({
            "model": "m", "training_file": "file-1",
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
            "metadata": {"team": "x"}, "seed": 3, "suffix": "s"
        }))
        .unwrap();
        assert_eq!(r.hyperparameters["n_epochs"], 2);
        assert_eq!(r.hyperparameters["batch_size"], "auto");
        assert_eq!(r.seed, Some(3));
    }

    #[test]
    fn every_field_is_checked() {
        let base = |extra: Value| {
            let mut b = json!({"model": "m", "training_file": "file-1"});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        assert_eq!(err_param(json!({"training_file": "f"})), "model");
        assert_eq!(err_param(json!({"model": "m"})), "training_file");
        assert_eq!(err_param(base(json!({"bogus": 1}))), "bogus");
        assert_eq!(
            err_param(base(json!({"method": {"type": "dpo"}}))),
            "method.type"
        );
        assert_eq!(
            err_param(base(json!({"method": {"type": "reinforcement"}}))),
            "method.type"
        );
        assert_eq!(
            err_param(base(json!({"hyperparameters": {"n_epochs": 0}}))),
            "hyperparameters.n_epochs"
        );
        assert_eq!(
            err_param(base(json!({"hyperparameters": {"lr": 1}}))),
            "hyperparameters.lr"
        );
        assert_eq!(err_param(base(json!({"suffix": "x".repeat(65)}))), "suffix");
        assert_eq!(err_param(base(json!({"suffix": "a:b"}))), "suffix");
        assert_eq!(err_param(base(json!({"suffix": "my model"}))), "suffix");
        assert_eq!(err_param(base(json!({"seed": -1}))), "seed");
        let many: Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(err_param(base(json!({"metadata": many}))), "metadata");
        assert_eq!(
            err_param(base(json!({"metadata": {"k": "v".repeat(513)}}))),
            "metadata.k"
        );
        assert_eq!(
            err_param(base(json!({"metadata": {"k".repeat(65): "v"}}))),
            format!("metadata.{}", "k".repeat(65))
        );
        assert_eq!(
            err_param(base(json!({"integrations": [{"type": "wandb"}]}))),
            "integrations"
        );
        let e = validate(&base(json!({"method": {"type": "dpo"}}))).unwrap_err();
        assert!(e.message.contains("not supported"));
    }
}

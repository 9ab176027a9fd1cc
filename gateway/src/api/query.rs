//! List query parameters (after, limit, order, purpose, metadata[k]=v), parsed from the raw
//! pairs so every rejection names its parameter.

use crate::error::ApiError;
use crate::store::SortOrder;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct ListParams {
    pub after: Option<String>,
    pub limit: Option<usize>,
    pub order: Option<SortOrder>,
    pub purpose: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl ListParams {
    /// `max_limit` bounds `limit`; unknown parameters are ignored (as OpenAI does).
    pub fn parse(pairs: &[(String, String)], max_limit: usize) -> Result<ListParams, ApiError> {
        let mut p = ListParams::default();
        for (k, v) in pairs {
            match k.as_str() {
                "after" => p.after = Some(v.clone()),
                "limit" => {
                    let n: usize = v.parse().map_err(|_| {
                        ApiError::invalid(
                            "limit",
                            format!("Invalid limit `{v}`: expected an integer."),
                        )
                    })?;
                    if n == 0 || n > max_limit {
                        return Err(ApiError::invalid(
                            "limit",
                            format!("Invalid limit {n}: must be between 1 and {max_limit}."),
                        ));
                    }
                    p.limit = Some(n);
                }
                "order" => {
                    p.order = Some(match v.as_str() {
                        "asc" => SortOrder::Asc,
                        "desc" => SortOrder::Desc,
                        _ => {
                            return Err(ApiError::invalid(
                                "order",
                                format!("Invalid order `{v}`: expected asc or desc."),
                            ))
                        }
                    })
                }
                "purpose" => p.purpose = Some(v.clone()),
                other => {
                    if let Some(key) = other
                        .strip_prefix("metadata[")
                        .and_then(|r| r.strip_suffix(']'))
                    {
                        p.metadata.insert(key.to_string(), v.clone());
                    }
                }
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_rejects_with_param() {
        let p = ListParams::parse(
            &pairs(&[("limit", "5"), ("metadata[team]", "x"), ("order", "asc")]),
            100,
        )
        .unwrap();
        assert_eq!(p.limit, Some(5));
        assert_eq!(p.metadata["team"], "x");
        assert_eq!(p.order, Some(SortOrder::Asc));
        assert_eq!(
            ListParams::parse(&pairs(&[("limit", "0")]), 100)
                .unwrap_err()
                .param
                .as_deref(),
            Some("limit")
        );
        assert_eq!(
            ListParams::parse(&pairs(&[("limit", "x")]), 100)
                .unwrap_err()
                .param
                .as_deref(),
            Some("limit")
        );
        assert_eq!(
            ListParams::parse(&pairs(&[("order", "up")]), 100)
                .unwrap_err()
                .param
                .as_deref(),
            Some("order")
        );
    }
}

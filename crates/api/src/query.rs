//! Query strings: each route's parameters, read strictly (an unknown parameter is an
//! error, as an unknown body field is).
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Parses a query string (without the `?`) into `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    serde_urlencoded::from_str(query).map_err(|e| format!("invalid query: {e}"))
}

/// `GET /v1/certificates?expiring_within=30d&status=active&limit=100&cursor=…`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct InventoryParams {
    /// Only certificates that expire within this duration (`30d`, `12h`, `90m`).
    pub expiring_within: Option<String>,
    /// Only certificates with this status.
    pub status: Option<crate::Status>,
    /// Certificates per page, 1 to [`InventoryParams::MAX_LIMIT`] (default 100).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl InventoryParams {
    /// The most certificates one page holds.
    pub const MAX_LIMIT: u32 = 1000;

    /// Certificates per page: the default 100, or the `limit` asked for when it is in range.
    pub fn page_size(&self) -> Result<u32, String> {
        match self.limit {
            None => Ok(100),
            Some(n @ 1..=Self::MAX_LIMIT) => Ok(n),
            Some(n) => Err(format!(
                "limit {n} is out of range: a page holds 1 to {} certificates",
                Self::MAX_LIMIT
            )),
        }
    }

    /// The position a page cursor (`<not_after>:<serial>`) continues after.
    pub fn after(&self) -> Result<Option<(i64, String)>, String> {
        let Some(cursor) = self.cursor.as_deref() else {
            return Ok(None);
        };
        cursor
            .split_once(':')
            .and_then(|(t, s)| Some((t.parse().ok()?, s.to_owned())))
            .map(Some)
            .ok_or_else(|| "cursor is not one this server returned".to_owned())
    }
}

/// `GET /v1/agent/watch?revision=N&timeout=SECONDS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    #[serde(default)]
    pub revision: i64,
    /// Seconds to wait for a change (default 30; a longer wait is cut to 60).
    pub timeout: Option<u64>,
}

/// `PUT /v1/ca/rotate?force=BOOL`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    #[serde(default)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_clear() {
        let q: InventoryParams = parse("status=active&limit=5&cursor=17:ab").unwrap();
        assert_eq!(q.after().unwrap(), Some((17, "ab".into())));
        assert!(
            parse::<InventoryParams>("colour=red")
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(parse::<WatchParams>("revision=x").is_err());
        assert!(parse::<RotateParams>("").is_ok_and(|p| !p.force));
        let bad = InventoryParams {
            cursor: Some("nonsense".into()),
            ..InventoryParams::default()
        };
        assert!(bad.after().is_err());
    }
}

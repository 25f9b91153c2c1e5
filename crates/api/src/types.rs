//! Request and response bodies. Field names are the interface: the Kyma-compatible
//! endpoints use `csr`, `crt`, `clientCrt`, `caCrt` exactly as Kyma does.
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Every error answer: `{"code": <http status>, "error": "<message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    pub error: String,
}

/// `POST /v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    /// Base64 of the PEM CSR.
    pub csr: String,
}

/// `POST /v1/applications/certificates/renewals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalRequest {
    /// Base64 of the PEM CSR.
    pub csr: String,
}

/// A certificate as the Kyma API returns it; every field is base64 of PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBundle {
    /// The certificate followed by its CA chain.
    pub crt: String,
    /// The certificate alone.
    #[serde(rename = "clientCrt")]
    pub client_crt: String,
    /// The issuing CA chain.
    #[serde(rename = "caCrt")]
    pub ca_crt: String,
}

/// `POST /v1/certificates/revocations` (admin): one of `hash` (SHA-256 of the DER, hex) or
/// `serial` (hex).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// RFC 5280 reason name (`key-compromise`, `superseded`, …); `unspecified` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who a certificate or token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Operators: may change cluster state.
    Admin,
    /// A node's agent.
    Node,
    /// An application client.
    App,
    /// The server's own serving certificate.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Node => "node",
            Role::App => "app",
            Role::Server => "server",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Node, Role::App, Role::Server]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/tokens` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    pub role: Role,
    /// Lifetime in seconds; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The join token, `EVG10<root hash>::<id>.<secret>`. Shown once; only a hash is kept.
    pub token: String,
    pub id: String,
    pub role: Role,
    /// RFC 3339, absent when the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    pub serial: String,
    pub sha256: String,
    pub subject: String,
    pub sans: Vec<String>,
    pub profile: String,
    pub role: String,
    pub issuer: String,
    pub owner: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_from: Option<String>,
}

/// `GET /v1/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPage {
    pub certificates: Vec<CertificateSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Base64 of PEM text, as the Kyma API carries certificates and CSRs.
pub fn encode_pem(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
}

/// Decodes base64 of PEM, with or without line breaks or spaces (`base64` wraps at 76
/// columns unless told `-w0`).
pub fn decode_pem(b64: &str) -> Result<Vec<u8>, String> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("not valid base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_pem_tolerates_line_breaks() {
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        let b64 = encode_pem(pem);
        let wrapped: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(decode_pem(&wrapped).unwrap(), pem.as_bytes());
        assert_eq!(decode_pem(&b64).unwrap(), pem.as_bytes());
        assert!(decode_pem("not base64!").unwrap_err().contains("base64"));
    }

    #[test]
    fn kyma_field_names() {
        let b = CertificateBundle {
            crt: "a".into(),
            client_crt: "b".into(),
            ca_crt: "c".into(),
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"crt":"a","clientCrt":"b","caCrt":"c"}"#
        );
    }
}

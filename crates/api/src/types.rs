//! Request and response bodies. Field names are the interface: the Kyma-compatible
//! endpoints use `csr`, `crt`, `clientCrt`, `caCrt` exactly as Kyma does.
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::domain::{Kind, Scope, Status, Usage};

/// Every error answer: `{"code": <http status>, "error": "<message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: u16,
    pub error: String,
}

/// `POST /v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// Base64 of the PEM CSR.
    pub csr: String,
}

/// `POST /v1/applications/certificates/renewals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenewalRequest {
    /// Base64 of the PEM CSR.
    pub csr: String,
}

/// A certificate as the Kyma API returns it; every field is base64 of PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Operators: may change cluster state.
    Admin,
    /// A node's agent (what `evergreen token create` makes unless told otherwise).
    #[default]
    Node,
    /// An application client.
    App,
    /// The server's own serving certificate.
    Server,
    /// A named certificate for a service (proxy, syncer, …): never an API credential.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Node => "node",
            Role::App => "app",
            Role::Server => "server",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Admin,
            Role::Node,
            Role::App,
            Role::Server,
            Role::Service,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/tokens` (admin): a join token that proves a right to one identity.
///
/// A node token names its node (`node`), or a pattern of names (`nodes`, `*` for any run
/// of characters) with a number of `uses`; an app token names the subject it may enroll
/// (`subject`, whose CN may hold `*`). Tokens are single-use unless `uses` says otherwise
/// and expire after `ttl_seconds` (default 24 hours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub role: Role,
    /// Lifetime in seconds; absent: 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Node tokens: the one node name it enrolls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Node tokens: a pattern of node names (`worker-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// App tokens: the subject it enrolls (`CN=billing, O=team`; the CN may hold `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How many enrollments it allows; absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The join token, `EVG10<root hash>::<id>.<secret>`. Shown once; only a hash is kept.
    pub token: String,
    pub id: String,
    pub role: Role,
    /// What it may enroll: `node node-1`, `nodes matching worker-*`, `subject CN=app`.
    pub enrolls: String,
    /// How many enrollments it allows.
    pub uses: u32,
    /// RFC 3339.
    pub expires_at: String,
}

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// `superseded`: replaced by `superseded_by`.
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

/// `GET /v1/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A named certificate's declaration (`POST /v1/cluster/certificates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NamedCertificateSpec {
    pub name: String,
    /// `cluster` (one certificate and key for every node) or `node` (one per node, key
    /// made on the node).
    #[serde(default)]
    pub scope: Scope,
    /// `selfsigned` (issued by the cluster CA), `provided` (uploaded) or `secret` (read
    /// from a directory the server watches).
    #[serde(rename = "type", default)]
    pub kind: Kind,
    #[serde(default)]
    pub label: String,
    /// Internal certificates may only be selfsigned.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub usage: Usage,
    /// DNS names or IPs; node scope may use `{node}` and `{ip}`.
    #[serde(default)]
    pub sans: Vec<String>,
    /// Nodes that install it; empty: every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// For `secret`: the directory and the file names in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// DNS suffixes every DNS name of the certificate must end with (`nodes.example.com`);
    /// empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_dns: Vec<String>,
    /// IP ranges every address of the certificate must lie in (`10.0.0.0/8`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
}

/// Where a `secret` certificate is read from: `path/cert`, `path/key`, `path/cacert`
/// unless other file names are given (as Event Streams' `tls.cert`, `tls.key`, `tls.cacert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub path: String,
    #[serde(default = "default_cert_key")]
    pub cert: String,
    #[serde(default = "default_key_key")]
    pub key: String,
    #[serde(default = "default_cacert_key")]
    pub cacert: String,
}

fn default_cert_key() -> String {
    "cert".into()
}
fn default_key_key() -> String {
    "key".into()
}
fn default_cacert_key() -> String {
    "cacert".into()
}

/// `PUT /v1/cluster/update_cert`, as Redis Enterprise: PEM text, not base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateCert {
    pub name: String,
    pub key: String,
    pub certificate: String,
}

/// `PUT /v1/cluster/certificates`: all validated before any is changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateCerts {
    pub certificates: Vec<UpdateCert>,
}

/// What a replacement did, and whether clients must change what they trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replacement {
    pub name: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// True when the new certificate is not issued by the CA that issued the one it
    /// replaces (clients must trust the new CA).
    pub clients_must_update_trust: bool,
    pub trust: String,
}

/// `POST /v1/cluster/certificates/rotate`: the names to regenerate; empty: every
/// selfsigned one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    pub names: Vec<String>,
}

/// `PUT /v1/cluster/certificates/{name}/label`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    pub label: String,
}

/// `PUT /v1/cluster/certificates/{name}/type`: switch a named certificate to another
/// type. `selfsigned` issues a new version now; `secret` reads the directory now (give
/// `secret`, or the one it had is read again); `provided` keeps the current version until
/// a certificate is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TypeRequest {
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
}

/// `DELETE /v1/cluster/certificates/{name}`: what was removed. The certificates this
/// cluster issued for it that were still live are revoked (cessation of operation), and
/// nodes remove the files they installed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamedDeletion {
    pub name: String,
    /// Serials revoked with it.
    pub revoked: Vec<String>,
}

/// A node's acknowledgement of what it installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeAck {
    pub node: String,
    pub version: i64,
    pub fingerprint: String,
    /// RFC 3339.
    pub at: String,
    /// Whether the node saw its service serve this version; absent when it does not check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<bool>,
}

/// One named certificate with its rollout (`GET /v1/cluster/certificates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamedCertificateStatus {
    pub name: String,
    pub scope: Scope,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub label: String,
    pub internal: bool,
    pub usage: Usage,
    pub sans: Vec<String>,
    pub nodes: Vec<String>,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    pub acknowledged: Vec<NodeAck>,
}

/// `POST /v1/nodes/{node}/bundle`: a node credential made by the server, for a runtime
/// that runs no agent. Every field is base64 of PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeBundle {
    pub crt: String,
    pub key: String,
    #[serde(rename = "caCrt")]
    pub ca_crt: String,
}

/// `GET /v1/agent/watch?revision=N`: what a node must have installed. Answered when the
/// cluster revision passes N, or after the poll timeout with the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentWatch {
    pub revision: i64,
    /// The trust bundle (`/cacerts`), base64 of PEM.
    pub trust_bundle: String,
    /// The CA that issues node identities now, base64 of PEM: an identity issued by
    /// another (before a CA rotation) is renewed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_ca: Option<String>,
    /// The CA whose key signed the assignments' attestations, with its chain, base64 of
    /// PEM; an agent trusts it only if it chains to a root the agent trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
    pub certificates: Vec<Assignment>,
}

/// One named certificate a node must install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    pub name: String,
    pub scope: Scope,
    pub version: i64,
    pub usage: Usage,
    /// Cluster scope: the certificate chain, its key and the CA bundle, base64 of PEM.
    /// Node scope: no `crt` or `key` (the node makes a key and asks
    /// `POST /v1/agent/issue`), and `ca` is the CA issuing it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Cluster scope: the cluster's word that this is the certificate an admin set, for
    /// one not issued by the cluster's CAs (`provided`, `secret`): base64 of a signature by
    /// the current `server-ca` key over [`attestation_message`]. Agents install a
    /// certificate only when it chains to the roots they trust or carries this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
}

/// What an [`Assignment`]'s attestation signs: the name, version and SHA-256 of the leaf,
/// after a label no certificate or CRL begins with.
pub fn attestation_message(name: &str, version: i64, fingerprint: &str) -> Vec<u8> {
    format!("evergreen assignment v1\n{name}\n{version}\n{fingerprint}\n").into_bytes()
}

/// `POST /v1/agent/issue`: a node-scope certificate for the calling node. Its names are
/// the declaration's, with `{node}` the node's enrolled name and `{ip}` the addresses an
/// admin allowed for it (`evergreen node allow`), else the address the server sees it
/// connect from; nothing in the request chooses them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentIssueRequest {
    pub name: String,
    /// Base64 of the PEM CSR; only its key is used.
    pub csr: String,
}

/// `POST /v1/agent/status`: what the node installed, and what it refused to trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    pub certificates: Vec<Installed>,
    /// What the agent refused from the server since its last report (a root not
    /// cross-signed by one it trusts, an assignment that does not verify), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// `PUT /v1/nodes/{node}/addresses` (admin): the IP addresses `{ip}` stands for in the
/// node's certificates, replacing those allowed before; empty: the address the server
/// sees the node connect from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeAddresses {
    pub addresses: Vec<String>,
}

/// What the server knows of a node (`PUT /v1/nodes/{node}/addresses`,
/// `POST /v1/nodes/{node}/replace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    pub node: String,
    pub addresses: Vec<String>,
    /// Serials of the node's live identity certificates.
    pub identities: Vec<String>,
    /// What was done, for people.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Installed {
    pub name: String,
    pub version: i64,
    /// SHA-256 of the installed certificate's DER, hex.
    pub fingerprint: String,
    /// Whether the service was seen serving it after the reload (`verify` in the agent's
    /// configuration); absent when the agent does not check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<bool>,
}

/// `PUT /v1/ca/rotate?force=BOOL`: the staged files of a CA directory, by Evergreen's file
/// names (`root-ca.crt`, `root-ca.key`, `server-ca.crt`, `server-ca.key`, `client-ca.crt`,
/// `client-ca.key`, `peer-ca.crt`, `peer-ca.key`, `service.key`), as PEM text. A file
/// left out or empty keeps the current value. (`evergreen certificate rotate-ca` maps
/// k3s's layout to these names.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaRotateRequest {
    pub files: std::collections::BTreeMap<String, String>,
}

/// What a CA rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaRotation {
    /// The cluster revision agents will see the new trust bundle at.
    pub revision: i64,
    /// What changed: `root-ca`, `server-ca`, …, `service-account keys`.
    pub rotated: Vec<String>,
    /// Integrity checks that failed and were skipped with `force`.
    pub forced_past: Vec<String>,
    /// The root join tokens pin from now on.
    pub root_sha256: String,
    /// How many certificates the trust bundle holds (old and new CAs).
    pub trust_bundle_certificates: usize,
    /// What the operator should know: CAs that publish no CRL, join tokens that no longer
    /// work after a root that is not cross-signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `POST /v1/keys/service-account/rotate`: with `retire`, only removes that key;
/// without, puts a new signing key first and keeps the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceKeyRotation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<String>,
    /// Key type of the new signing key; `ec-p256` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
}

/// `GET /v1/keys/service-account`: a JSON Web Key Set (RFC 7517), the signing key first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    pub keys: Vec<std::collections::BTreeMap<String, String>>,
}

impl crate::RequestBody for EnrollRequest {
    const TEXT_FIELDS: &'static [&'static str] = &["csr"];
}
impl crate::RequestBody for RenewalRequest {
    const TEXT_FIELDS: &'static [&'static str] = &["csr"];
}
impl crate::RequestBody for AgentIssueRequest {
    const TEXT_FIELDS: &'static [&'static str] = &["csr"];
}
impl crate::RequestBody for UpdateCert {
    const TEXT_FIELDS: &'static [&'static str] = &["key", "certificate"];
}
impl crate::RequestBody for UpdateCerts {
    const TEXT_FIELDS: &'static [&'static str] = &["key", "certificate"];
}
impl crate::RequestBody for RevocationRequest {}
impl crate::RequestBody for TokenRequest {}
impl crate::RequestBody for NodeAddresses {}
impl crate::RequestBody for NamedCertificateSpec {}
impl crate::RequestBody for RotateRequest {}
impl crate::RequestBody for LabelRequest {}
impl crate::RequestBody for TypeRequest {}
impl crate::RequestBody for AgentStatus {}
impl crate::RequestBody for CaRotateRequest {}
impl crate::RequestBody for ServiceKeyRotation {}

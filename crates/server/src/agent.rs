//! What agents call: the long-poll watch, issuance of node-scope certificates, and status
//! reports that become the per-node acknowledgements.
//!
//! The names in a node's certificates are facts the server checks, never claims the node
//! makes: `{node}` is the name its join token bound it to, `{ip}` the addresses an admin
//! allowed for it (or the address the server sees it connect from), and nothing a node
//! asks for may name the server itself, `localhost`, a loopback address or a wildcard, or
//! fall outside the named certificate's allowed names.
use evergreen_api::query::WatchParams;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use evergreen_api::{
    AgentIssueRequest, AgentStatus, AgentWatch, Assignment, CertificateBundle, Installed,
    attestation_message, encode_pem,
};
use evergreen_pki::name::NameAttribute;
use evergreen_pki::policy::{CsrPolicy, SanRule, SubjectRule};
use evergreen_pki::san_policy::{SanPolicy, never_for_a_node};
use evergreen_pki::{DistinguishedName, SubjectAltName, pem};
use evergreen_store::{Acknowledgement, NamedRecord};

use crate::auth::{Agent, Caller, Identity, Peer};
use crate::error::{ApiError, JsonBody, QueryOf, Reason};
use crate::fleet::Snapshot;
use crate::state::{AppState, Issuance};

/// The longest a watch waits for a change; clients allow a request longer than this
/// (`evergreen_api::client::REQUEST_TIMEOUT`).
pub const MAX_POLL: Duration = Duration::from_secs(60);

/// The most refusals one status report may carry to the audit log.
const MAX_REPORTED_REFUSALS: usize = 16;

type AppStateRef = State<Arc<AppState>>;

/// The node a caller is: its certificate's common name, which its join token bound.
fn node_name(caller: &Identity) -> Result<String, ApiError> {
    caller
        .info
        .subject
        .get(&NameAttribute::CommonName)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::forbidden("a node certificate must have a common name"))
}

#[utoipa::path(
    get,
    path = "/v1/agent/watch",
    tag = "agent",
    operation_id = "agent_watch",
    summary = "Long-poll for the node's assignments and trust bundle",
    security(("mtls" = ["node"])),
    params(evergreen_api::query::WatchParams),
    responses((status = 200, description = "The state at this revision or later", body = evergreen_api::AgentWatch))
)]
pub async fn watch(
    State(state): AppStateRef,
    caller: Caller<Agent>,
    QueryOf(params): QueryOf<WatchParams>,
) -> Result<Json<AgentWatch>, ApiError> {
    let node = node_name(&caller)?;
    let mut revisions = state.revision.subscribe();
    let mut stopping = state.stopping.clone();
    let wait = Duration::from_secs(params.timeout.unwrap_or(30)).min(MAX_POLL);
    {
        let _watching = crate::metrics::Watching::start(&state.metrics.watches);
        // A server that begins to stop answers at once, so the agent's next watch goes to
        // another replica (or waits for this one) instead of holding up the stop.
        tokio::select! {
            _ = tokio::time::timeout(wait, revisions.wait_for(|r| *r > params.revision)) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
    let revision = *revisions.borrow();
    let snapshot = snapshot(&state, revision).await?;
    Ok(Json(AgentWatch {
        revision: snapshot.revision,
        trust_bundle: snapshot.trust_bundle.clone(),
        identity_ca: Some(snapshot.identity_ca.clone()),
        attested_by: Some(snapshot.attested_by.clone()),
        certificates: snapshot
            .certificates
            .iter()
            .filter(|(nodes, _)| nodes.is_empty() || nodes.contains(&node))
            .map(|(_, assignment)| assignment.clone())
            .collect(),
    }))
}

/// The snapshot for `revision` and the cluster served now, built if missing or stale.
async fn snapshot(state: &AppState, revision: i64) -> Result<Arc<Snapshot>, ApiError> {
    let cluster = state.cluster.load_full();
    let mut cached = state.watch_snapshot.lock().await;
    if let Some(snapshot) = cached.as_ref()
        && snapshot.revision == revision
        && Arc::ptr_eq(&snapshot.cluster, &cluster)
    {
        return Ok(snapshot.clone());
    }
    let mut certificates = Vec::new();
    for record in state.store.named().await? {
        if record.version == 0 {
            continue;
        }
        let mut assignment = Assignment {
            name: record.name.clone(),
            scope: crate::named::stored(&record.scope)?,
            version: record.version,
            usage: crate::named::stored(&record.usage)?,
            crt: None,
            key: None,
            ca: None,
            attestation: None,
        };
        if record.scope == "cluster" {
            let Some(version) = state
                .store
                .named_version(&record.name, record.version)
                .await?
            else {
                continue;
            };
            let (Some(chain), Some(sealed), Some(fingerprint)) =
                (version.chain_pem, version.sealed_key, version.fingerprint)
            else {
                continue;
            };
            let key = state
                .sealing
                .open(
                    &sealed,
                    &crate::named::key_aad(&record.name, record.version),
                )
                .map_err(ApiError::internal)?;
            let message = attestation_message(&record.name, record.version, &fingerprint);
            let signature = cluster
                .server_ca
                .key()
                .sign(&message)
                .map_err(ApiError::internal)?;
            assignment.crt = Some(encode_pem(&chain));
            assignment.key = Some(encode_pem(&String::from_utf8_lossy(&key)));
            assignment.ca = version.ca_pem.map(|c| encode_pem(&c));
            assignment.attestation = Some(base64_encode(&signature));
        } else if let Some(ca) = crate::named::usage(&record.usage)
            .ok()
            .and_then(|(_, ca)| cluster.ca(ca))
        {
            // Node scope: the CA that issues it now; a node holding one from another
            // (before a CA rotation) asks again.
            assignment.ca = Some(encode_pem(&ca.bundle_pem()));
        }
        certificates.push((record.nodes, assignment));
    }
    let snapshot = Arc::new(Snapshot {
        revision,
        trust_bundle: encode_pem(&pem::encode_certificates(&cluster.trust_bundle())),
        identity_ca: encode_pem(&cluster.client_ca.bundle_pem()),
        attested_by: encode_pem(&cluster.server_ca.bundle_pem()),
        cluster,
        certificates,
    });
    *cached = Some(snapshot.clone());
    Ok(snapshot)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The names of a node-scope certificate for one node: each template with `{node}` the
/// node's name and `{ip}` each of its addresses, every one checked.
fn node_names(
    state: &AppState,
    record: &NamedRecord,
    node: &str,
    addresses: &[std::net::IpAddr],
) -> Result<Vec<SubjectAltName>, ApiError> {
    let policy =
        SanPolicy::new(&record.allowed_dns, &record.allowed_cidrs).map_err(ApiError::internal)?;
    let mut sans: Vec<SubjectAltName> = Vec::new();
    for template in &record.sans {
        let expanded: Vec<String> = if template.contains("{ip}") {
            addresses
                .iter()
                .map(|ip| {
                    template
                        .replace("{node}", node)
                        .replace("{ip}", &ip.to_string())
                })
                .collect()
        } else {
            vec![template.replace("{node}", node)]
        };
        for text in expanded {
            let san: SubjectAltName = text.parse().map_err(|e: String| {
                ApiError::bad_request(format!("{} for node {node}: {e}", record.name))
            })?;
            if let Some(why) = never_for_a_node(&san) {
                return Err(ApiError::forbidden(format!(
                    "{} would name {san} for node {node}, which is never issued to a node: {why}",
                    record.name
                ))
                .reason(Reason::NameNotAllowed));
            }
            if state.serves_name(&san) {
                return Err(ApiError::forbidden(format!(
                    "{} would name {san} for node {node}, which is a name of this server; a node never gets a certificate for the server's names",
                    record.name
                ))
                .reason(Reason::NameNotAllowed));
            }
            policy.check(&san).map_err(|why| {
                ApiError::forbidden(format!("{} for node {node}: {why}", record.name))
                    .reason(Reason::NameNotAllowed)
            })?;
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
    }
    Ok(sans)
}

/// The addresses `{ip}` stands for in `node`'s certificates: those an admin allowed,
/// else the address the node connects from, if that may be named.
async fn node_addresses(
    state: &AppState,
    node: &str,
    peer: &Peer,
) -> Result<Vec<std::net::IpAddr>, ApiError> {
    let allowed = state
        .store
        .node(node)
        .await?
        .map(|n| n.addresses)
        .unwrap_or_default();
    if !allowed.is_empty() {
        return allowed
            .iter()
            .map(|a| a.parse().map_err(ApiError::internal))
            .collect();
    }
    let seen = match peer.remote.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    match never_for_a_node(&SubjectAltName::Ip(seen)) {
        None => Ok(vec![seen]),
        Some(why) => Err(ApiError::forbidden(format!(
            "node {node} has no address for {{ip}}: the server sees it connect from {seen}, which is never put in a node's certificate ({why}); allow its address with 'evergreen node allow {node} --ip ADDR'"
        ))
        .reason(Reason::NoAddress)),
    }
}

#[utoipa::path(
    post,
    path = "/v1/agent/issue",
    tag = "agent",
    operation_id = "agent_issue",
    summary = "Issue a node-scope certificate; names come from the declaration, the CSR gives only the key",
    security(("mtls" = ["node"])),
    request_body = evergreen_api::AgentIssueRequest,
    responses((status = 201, description = "Issued", body = evergreen_api::CertificateBundle))
)]
/// Issues a node-scope certificate: subject `CN=<node>`, names from the declaration with
/// `{node}` and `{ip}` filled in by the server; the CSR gives only the key.
pub async fn issue(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    caller: Caller<Agent>,
    JsonBody(request): JsonBody<AgentIssueRequest>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let node = node_name(&caller)?;
    let name = crate::text::bounded(&request.name, 64);
    let record = match state.store.named_by_name(&request.name).await? {
        Some(r) if r.scope == "node" && (r.nodes.is_empty() || r.nodes.contains(&node)) => r,
        Some(r) if r.scope != "node" => {
            return Err(ApiError::bad_request(format!(
                "{} has cluster scope; its certificate comes with the watch",
                r.name
            ))
            .target(name));
        }
        _ => {
            return Err(ApiError::forbidden(format!(
                "no node-scope certificate {name:?} is assigned to node {node}"
            ))
            .reason(Reason::NotAssigned)
            .target(name));
        }
    };
    let addresses = if record.sans.iter().any(|s| s.contains("{ip}")) {
        node_addresses(&state, &node, &peer)
            .await
            .map_err(|e| e.target(&name))?
    } else {
        Vec::new()
    };
    let sans = node_names(&state, &record, &node, &addresses).map_err(|e| e.target(&name))?;
    let (profile, ca) = crate::named::usage(&record.usage).map_err(ApiError::internal)?;
    let csr = crate::enrollment::read_csr(&request.csr).map_err(|e| e.target(&name))?;
    let policy = CsrPolicy {
        profile,
        validity: state.settings.node_validity,
        subject: SubjectRule::Exactly(DistinguishedName::common_name(&node)),
        subject_alt_names: SanRule::Replace(sans),
    };
    let issue = policy.decide(&csr).map_err(|e| {
        ApiError::forbidden(e.to_string())
            .reason(Reason::Policy)
            .target(&name)
    })?;
    // The certificate this one replaces: the node's newest live one for this name.
    let now = state.now().unix_timestamp();
    let prefix = node_owner_prefix(&node, &record.name);
    let renewed_from = state
        .store
        .certificates_by_subject(&DistinguishedName::common_name(&node).to_string())
        .await?
        .into_iter()
        .filter(|c| c.owner.starts_with(&prefix) && c.status(now) == "active")
        .max_by_key(|c| (c.issued_at, c.serial.clone()))
        .map(|c| c.serial);
    let how = Issuance {
        ca,
        role: evergreen_api::Role::Service,
        owner: node_owner(&node, &record.name, record.version),
        renewed_from,
        actor: caller.actor(),
        action: "agent.issue",
    };
    let (issued, _) = state.issue(&issue, how).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::enrollment::bundle(&state, &issued, ca)?),
    ))
}

/// The inventory's owner of a node-scope certificate.
fn node_owner(node: &str, name: &str, version: i64) -> String {
    format!("{}{version}", node_owner_prefix(node, name))
}

/// What the owners of every version of `node`'s certificate `name` start with.
fn node_owner_prefix(node: &str, name: &str) -> String {
    format!("node {node}, {name} version ")
}

/// Checks one acknowledgement against what the server assigned to `node`.
async fn check_installed(
    state: &AppState,
    node: &str,
    installed: &Installed,
    records: &[NamedRecord],
) -> Result<(), ApiError> {
    let name = crate::text::bounded(&installed.name, 64);
    let Some(record) = records.iter().find(|r| {
        r.name == installed.name && (r.nodes.is_empty() || r.nodes.iter().any(|n| n == node))
    }) else {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a certificate assigned to node {node}"
        ))
        .reason(Reason::NotAssigned)
        .target(name));
    };
    if !(1..=record.version).contains(&installed.version) {
        return Err(ApiError::bad_request(format!(
            "{name} has no version {} (the current one is {})",
            installed.version, record.version
        ))
        .target(name));
    }
    let known = if record.scope == "cluster" {
        state
            .store
            .named_version(&record.name, installed.version)
            .await?
            .and_then(|v| v.fingerprint)
            .is_some_and(|f| f == installed.fingerprint)
    } else {
        let owner = node_owner(node, &record.name, installed.version);
        state
            .store
            .certificate_by_sha256(&installed.fingerprint)
            .await?
            .is_some_and(|c| c.owner == owner)
    };
    if !known {
        return Err(ApiError::bad_request(format!(
            "{name} version {} was not issued with fingerprint {}",
            installed.version,
            crate::text::bounded(&installed.fingerprint, 64)
        ))
        .target(name));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/agent/status",
    tag = "agent",
    operation_id = "agent_status",
    summary = "Report what the agent installed and whether it is served",
    security(("mtls" = ["node"])),
    request_body = evergreen_api::AgentStatus,
    responses((status = 204, description = "Recorded"))
)]
pub async fn status(
    State(state): AppStateRef,
    caller: Caller<Agent>,
    JsonBody(report): JsonBody<AgentStatus>,
) -> Result<StatusCode, ApiError> {
    let node = node_name(&caller)?;
    let records = state.store.named().await?;
    if report.certificates.len() > records.len() {
        return Err(ApiError::bad_request(format!(
            "the report lists {} certificates; at most the {} declared can be installed",
            report.certificates.len(),
            records.len()
        )));
    }
    for (i, installed) in report.certificates.iter().enumerate() {
        if report.certificates[..i]
            .iter()
            .any(|p| p.name == installed.name)
        {
            return Err(ApiError::bad_request(format!(
                "{} is listed twice",
                crate::text::bounded(&installed.name, 64)
            )));
        }
        check_installed(&state, &node, installed, &records).await?;
    }
    let actor = caller.actor();
    for refused in report.refused.iter().take(MAX_REPORTED_REFUSALS) {
        tracing::warn!(%node, refused = %crate::text::bounded(refused, 512), "the agent refused what a server sent it");
        state
            .audit(&actor, "agent.trust", &node, Err(refused))
            .await?;
    }
    let at = state.now().unix_timestamp();
    for installed in report.certificates {
        state
            .store
            .acknowledge(&Acknowledgement {
                node: node.clone(),
                name: installed.name,
                version: installed.version,
                fingerprint: installed.fingerprint,
                at,
                served: installed.served,
            })
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

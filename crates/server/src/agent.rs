//! What agents call: the long-poll watch, issuance of node-scope certificates, and status
//! reports that become the per-node acknowledgements.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use evergreen_api::{
    AgentIssueRequest, AgentStatus, AgentWatch, Assignment, CertificateBundle, Role, encode_pem,
};
use evergreen_pki::name::NameAttribute;
use evergreen_pki::policy::{CsrPolicy, SanRule, SubjectRule};
use evergreen_pki::{DistinguishedName, pem};
use evergreen_store::Acknowledgement;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, JsonBody};
use crate::routes::{body_or_refuse, caller, json_body, refuse};
use crate::state::{AppState, Cluster, Issuance};
use crate::tls::Peer;

/// The longest a watch waits for a change; clients allow a request longer than this
/// (`evergreen_api::client::REQUEST_TIMEOUT`).
pub const MAX_POLL: Duration = Duration::from_secs(60);

type AppStateRef = State<Arc<AppState>>;

/// The node a caller is: its certificate's common name.
fn node_name(caller: &Caller) -> Result<String, ApiError> {
    caller
        .info
        .subject
        .get(&NameAttribute::CommonName)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::forbidden("a node certificate must have a common name"))
}

#[derive(Debug, Deserialize)]
pub struct WatchParams {
    #[serde(default)]
    revision: i64,
    /// Seconds to wait for a change (at most 60).
    timeout: Option<u64>,
}

pub async fn watch(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    Query(params): Query<WatchParams>,
) -> Result<Json<AgentWatch>, ApiError> {
    let caller = caller(&state, &peer, "agent.watch", &[Role::Node]).await?;
    let node = node_name(&caller)?;
    let mut revisions = state.revision.subscribe();
    let wait = Duration::from_secs(params.timeout.unwrap_or(30)).min(MAX_POLL);
    {
        let _watching = crate::metrics::Watching::start(&state.metrics.watches);
        let _ = tokio::time::timeout(wait, revisions.wait_for(|r| *r > params.revision)).await;
    }
    let revision = *revisions.borrow();
    let snapshot = snapshot(&state, revision).await?;
    Ok(Json(AgentWatch {
        revision: snapshot.revision,
        trust_bundle: snapshot.trust_bundle.clone(),
        identity_ca: Some(snapshot.identity_ca.clone()),
        certificates: snapshot
            .certificates
            .iter()
            .filter(|(nodes, _)| nodes.is_empty() || nodes.contains(&node))
            .map(|(_, assignment)| assignment.clone())
            .collect(),
    }))
}

/// What every watch answers at one revision and cluster, before each node's own filter:
/// built once when either changes, not once per agent (a fleet wakes all at once).
#[derive(Debug)]
pub struct Snapshot {
    revision: i64,
    cluster: Arc<Cluster>,
    trust_bundle: String,
    identity_ca: String,
    /// Each assignment with the nodes it is for (none: every node).
    certificates: Vec<(Vec<String>, Assignment)>,
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
            scope: record.scope.clone(),
            version: record.version,
            usage: record.usage.clone(),
            crt: None,
            key: None,
            ca: None,
        };
        if record.scope == "cluster" {
            let Some(version) = state
                .store
                .named_version(&record.name, record.version)
                .await?
            else {
                continue;
            };
            let (Some(chain), Some(sealed)) = (version.chain_pem, version.sealed_key) else {
                continue;
            };
            let key = state
                .sealing
                .open(
                    &sealed,
                    &crate::named::key_aad(&record.name, record.version),
                )
                .map_err(ApiError::internal)?;
            assignment.crt = Some(encode_pem(&chain));
            assignment.key = Some(encode_pem(&String::from_utf8_lossy(&key)));
            assignment.ca = version.ca_pem.map(|c| encode_pem(&c));
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
        cluster,
        certificates,
    });
    *cached = Some(snapshot.clone());
    Ok(snapshot)
}

/// Issues a node-scope certificate: subject `CN=<node>`, names from the declaration with
/// `{node}` and `{ip}` filled in; the CSR gives only the key.
pub async fn issue(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    body: Result<JsonBody<AgentIssueRequest>, ApiError>,
) -> Result<(StatusCode, Json<CertificateBundle>), ApiError> {
    let caller = caller(&state, &peer, "agent.issue", &[Role::Node]).await?;
    let actor = caller.actor();
    let node = node_name(&caller)?;
    let request = body_or_refuse(&state, &actor, "agent.issue", "-", body).await?;
    let fail = |status: StatusCode, message: String| {
        let state = state.clone();
        let actor = actor.clone();
        let name = request.name.clone();
        async move {
            refuse(
                &state,
                &actor,
                "agent.issue",
                &name,
                "bad_request",
                ApiError::new(status, message),
            )
            .await
        }
    };
    let record = match state.store.named_by_name(&request.name).await? {
        Some(r) if r.scope == "node" && (r.nodes.is_empty() || r.nodes.contains(&node)) => r,
        Some(r) if r.scope != "node" => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} has cluster scope; its certificate comes with the watch",
                    r.name
                ),
            )
            .await);
        }
        _ => {
            return Err(fail(
                StatusCode::FORBIDDEN,
                format!(
                    "no node-scope certificate {:?} is assigned to node {node}",
                    request.name
                ),
            )
            .await);
        }
    };
    let ip = match request.ip.as_deref() {
        Some(ip) => match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("ip {ip:?} is not an IP address"),
                )
                .await);
            }
        },
        None if record.sans.iter().any(|s| s.contains("{ip}")) => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("{} names the node's {{ip}}: send ip", record.name),
            )
            .await);
        }
        None => String::new(),
    };
    let sans = match crate::named::node_sans(&record.sans, &node, &ip) {
        Ok(s) => s,
        Err(e) => return Err(fail(StatusCode::BAD_REQUEST, e).await),
    };
    let (profile, ca) = crate::named::usage(&record.usage).map_err(ApiError::internal)?;
    let csr = match evergreen_api::decode_pem(&request.csr)
        .map_err(|e| format!("csr is {e}"))
        .and_then(|pem| {
            evergreen_pki::CertificateRequest::from_pem("csr", &pem).map_err(|e| e.to_string())
        }) {
        Ok(csr) => csr,
        Err(e) => return Err(fail(StatusCode::BAD_REQUEST, e).await),
    };
    let policy = CsrPolicy {
        profile,
        validity: state.settings.node_validity,
        subject: SubjectRule::Exactly(DistinguishedName::common_name(&node)),
        subject_alt_names: SanRule::Replace(sans),
    };
    let issue = match policy.decide(&csr) {
        Ok(i) => i,
        Err(e) => return Err(fail(StatusCode::FORBIDDEN, e.to_string()).await),
    };
    let how = Issuance {
        ca,
        role: Role::Service,
        owner: format!("node {node}, {} version {}", record.name, record.version),
        renewed_from: None,
        actor: actor.clone(),
        action: "agent.issue",
    };
    let (issued, _) = state.issue(&issue, how).await?;
    let chain = state
        .cluster
        .load()
        .ca(ca)
        .map(|c| c.bundle_pem())
        .unwrap_or_default();
    let leaf = pem::encode("CERTIFICATE", &issued.der);
    Ok((
        StatusCode::CREATED,
        Json(CertificateBundle {
            crt: encode_pem(&format!("{leaf}{chain}")),
            client_crt: encode_pem(&leaf),
            ca_crt: encode_pem(&chain),
        }),
    ))
}

pub async fn status(
    State(state): AppStateRef,
    Extension(peer): Extension<Peer>,
    body: Result<JsonBody<AgentStatus>, ApiError>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &peer, "agent.status", &[Role::Node]).await?;
    let node = node_name(&caller)?;
    let report = json_body(body)?;
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
            })
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

//! Join tokens and enrollment: a token proves a right to one identity, not a role.
//!
//! A node token names its node (or a pattern of names, with a number of uses); an app
//! token names the subject it may enroll. Every token expires (24 hours unless told
//! otherwise) and is single-use unless made otherwise. The names in a certificate are the
//! token's, never the requester's: a node token for `node-2` enrolls `CN=node-2` and
//! nothing else, and no token enrolls a subject that is reserved (the admin's, the
//! server's, an enrolled node's). A refused enrollment changes nothing, its token's use
//! count included.
use evergreen_api::{
    CertificateBundle, EnrollRequest, Role, TokenRequest, TokenResponse, encode_pem,
};
use evergreen_pki::certificate::Fingerprint;
use evergreen_pki::name::NameAttribute;
use evergreen_pki::policy::{CsrPolicy, SanRule, SubjectRule, glob_match};
use evergreen_pki::token::{JoinToken, random_string};
use evergreen_pki::{CertificateRequest, DistinguishedName, Duration, Profile, pem};
use evergreen_store::{EnrollOutcome, Enrollment, TokenRecord, TokenUse};

use crate::cluster::CLIENT_CA;
use crate::error::{ApiError, Reason};
use crate::state::{AppState, Issuance};
use crate::text::rfc3339;

/// How long a token lives unless its request says.
pub const DEFAULT_TTL: Duration = Duration::hours(24);
/// The most uses one token may allow.
const MAX_USES: u32 = 1_000_000;
/// Organization values beginning with this are Evergreen's own (`evergreen:admin`).
const RESERVED_ORGANIZATION: &str = "evergreen:";
/// Common names of the server's own certificates.
const RESERVED_NAMES: [&str; 2] = ["evergreen-admin", "evergreen-server"];

/// Why `subject` is never issued through a token, if it is not: Evergreen's own names.
pub fn reserved_subject(subject: &DistinguishedName) -> Option<String> {
    if let Some(cn) = subject.get(&NameAttribute::CommonName)
        && RESERVED_NAMES.contains(&cn.trim())
    {
        return Some(format!(
            "CN={cn} is the server's own name and is never issued through a token"
        ));
    }
    subject
        .attributes()
        .find(|(a, v)| {
            matches!(
                a,
                NameAttribute::Organization | NameAttribute::OrganizationalUnit
            ) && v.trim().starts_with(RESERVED_ORGANIZATION)
        })
        .map(|(a, v)| {
            format!("{a}={v} is reserved: {RESERVED_ORGANIZATION}… names Evergreen's own roles")
        })
}

/// Whether `name` may name a node: the CN of its identity and what `{node}` stands for
/// in its certificates, so a DNS name of lowercase letters, digits, `-` and `.`, at most
/// 64 characters (RFC 5280's bound on a CN).
pub fn check_node_name(name: &str) -> Result<(), String> {
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if name.is_empty() || name.len() > 64 || !labels_ok {
        return Err(format!(
            "node name {:?} must be a DNS name of lowercase letters, digits, '-' and '.', at most 64 characters",
            crate::text::bounded(name, 80)
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!("{name} is the server's own name, not a node's"));
    }
    Ok(())
}

/// A node-name pattern: what [`check_node_name`] allows, and `*`.
fn check_node_pattern(pattern: &str) -> Result<(), String> {
    let ok = !pattern.is_empty()
        && pattern.len() <= 64
        && pattern
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node pattern {:?} may hold lowercase letters, digits, '-', '.' and '*' (any run of characters), at most 64",
            crate::text::bounded(pattern, 80)
        ))
    }
}

/// What a token enrolls, for people.
fn enrolls(record: &TokenRecord) -> String {
    match (&record.node, &record.node_pattern, &record.subject) {
        (Some(node), _, _) => format!("node {node}"),
        (None, Some(pattern), _) => format!("nodes matching {pattern}"),
        (None, None, Some(subject)) => format!("subject {subject}"),
        (None, None, None) => format!("any {} subject not reserved", record.role),
    }
}

/// Makes a join token (`POST /v1/tokens`): checks what it names, stores a hash of its
/// secret, and returns it once.
pub async fn create_token(
    state: &AppState,
    actor: &str,
    request: &TokenRequest,
) -> Result<TokenResponse, ApiError> {
    let (node, node_pattern, subject) = match request.role {
        Role::Node => {
            if request.subject.is_some() {
                return Err(ApiError::bad_request(
                    "a node token names its node (node or nodes), not a subject",
                ));
            }
            match (&request.node, &request.nodes) {
                (Some(node), None) => {
                    check_node_name(node).map_err(ApiError::bad_request)?;
                    (Some(node.clone()), None, None)
                }
                (None, Some(pattern)) => {
                    check_node_pattern(pattern).map_err(ApiError::bad_request)?;
                    (None, Some(pattern.clone()), None)
                }
                (Some(_), Some(_)) => {
                    return Err(ApiError::bad_request(
                        "give one of node (a name) or nodes (a pattern), not both",
                    ));
                }
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "a node token names the node it enrolls: node NAME, or nodes PATTERN with uses N (evergreen token create --role node --node NAME)",
                    ));
                }
            }
        }
        Role::App => {
            if request.node.is_some() || request.nodes.is_some() {
                return Err(ApiError::bad_request(
                    "an app token names a subject, not a node",
                ));
            }
            let Some(text) = &request.subject else {
                return Err(ApiError::bad_request(
                    "an app token names the subject it enrolls: subject \"CN=app, O=team\" (the CN may hold *) (evergreen token create --role app --subject DN)",
                ));
            };
            let pattern: DistinguishedName = text
                .parse()
                .map_err(|e: String| ApiError::bad_request(format!("subject: {e}")))?;
            pattern
                .check_bounds()
                .map_err(|e| ApiError::bad_request(format!("subject {pattern} {e}")))?;
            if let Some(why) = reserved_subject(&pattern) {
                return Err(ApiError::forbidden(why).reason(Reason::ReservedSubject));
            }
            (None, None, Some(pattern.to_string()))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "join tokens are for node or app, not {other}"
            )));
        }
    };
    let uses = request.uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&uses) {
        return Err(ApiError::bad_request(format!(
            "uses must be 1 to {MAX_USES}"
        )));
    }
    let now = state.now();
    let ttl = match request.ttl_seconds {
        None => DEFAULT_TTL,
        Some(0) => return Err(ApiError::bad_request("ttl_seconds must be at least 1")),
        Some(s) => i64::try_from(s)
            .ok()
            .map(Duration::seconds)
            .filter(|d| *d <= evergreen_api::duration::MAX)
            .ok_or_else(|| ApiError::bad_request("ttl_seconds is longer than a hundred years"))?,
    };
    let expires_at = (now + ttl).unix_timestamp();
    let id = random_string(6).map_err(ApiError::internal)?;
    let secret = random_string(16).map_err(ApiError::internal)?;
    let record = TokenRecord {
        id: id.clone(),
        secret_sha256: Fingerprint::of(secret.as_bytes()).to_string(),
        role: request.role.as_str().to_owned(),
        created_at: now.unix_timestamp(),
        expires_at: Some(expires_at),
        uses: 0,
        max_uses: Some(i64::from(uses)),
        node,
        node_pattern,
        subject,
        description: crate::text::bounded(&request.description, crate::text::MAX_FIELD),
    };
    state.store.insert_token(&record).await?;
    let token = JoinToken::new(
        Fingerprint::of(&state.cluster.load().root),
        id.clone(),
        secret,
    )
    .map_err(ApiError::internal)?;
    let enrolls = enrolls(&record);
    let detail = format!(
        "{} token for {enrolls}, {uses} use(s), expires {}",
        request.role,
        rfc3339(expires_at)
    );
    state.audit(actor, "token.create", &id, Ok(&detail)).await?;
    Ok(TokenResponse {
        token: token.to_string(),
        id,
        role: request.role,
        enrolls,
        uses,
        expires_at: rfc3339(expires_at),
    })
}

/// The CSR in a request: base64 of PEM.
pub fn read_csr(b64: &str) -> Result<CertificateRequest, ApiError> {
    let pem = evergreen_api::decode_pem(b64).map_err(|e| {
        ApiError::bad_request(format!("csr is {e}; send base64 of the PEM CSR"))
            .reason(Reason::BadCsr)
    })?;
    CertificateRequest::from_pem("csr", &pem)
        .map_err(|e| ApiError::bad_request(e.to_string()).reason(Reason::BadCsr))
}

/// Why a token cannot be used, as the API answers it.
fn token_refusal(token: &JoinToken, refused: TokenUse) -> ApiError {
    let id = token.id();
    let message = match refused {
        TokenUse::Accepted(_) | TokenUse::Unknown => {
            format!("join token {id} is not known to this server")
        }
        TokenUse::WrongSecret => format!("join token {id} has the wrong secret"),
        TokenUse::Expired { expires_at } => format!(
            "join token {id} expired at {}; create a new one with 'evergreen token create'",
            rfc3339(expires_at)
        ),
        TokenUse::UsedUp { max_uses } => format!(
            "join token {id} has been used {max_uses} time(s), all it allows; create a new one with 'evergreen token create'"
        ),
    };
    ApiError::unauthorized(message).reason(Reason::BadToken)
}

/// The subject a token lets this CSR have.
fn subject_rule(record: &TokenRecord, csr: &CertificateRequest) -> Result<SubjectRule, ApiError> {
    let cn = || {
        csr.subject()
            .get(&NameAttribute::CommonName)
            .unwrap_or_default()
    };
    let refuse = |message: String| Err(ApiError::forbidden(message).reason(Reason::Policy));
    match (&record.node, &record.node_pattern, &record.subject) {
        (Some(node), _, _) => Ok(SubjectRule::Exactly(DistinguishedName::common_name(node))),
        (None, Some(pattern), _) => {
            let name = cn();
            if let Err(message) = check_node_name(name) {
                return refuse(message);
            }
            if !glob_match(pattern, name) {
                return refuse(format!(
                    "this token enrolls nodes matching {pattern}; CN={} does not match",
                    crate::text::bounded(name, 80)
                ));
            }
            Ok(SubjectRule::Exactly(DistinguishedName::common_name(name)))
        }
        (None, None, Some(subject)) => {
            let pattern: DistinguishedName = subject.parse().map_err(|e: String| {
                ApiError::internal(format!(
                    "token {} holds subject {subject:?}: {e}",
                    record.id
                ))
            })?;
            Ok(SubjectRule::Matching(pattern))
        }
        (None, None, None) => Ok(SubjectRule::AsRequested),
    }
}

/// `POST /v1/enroll`: a certificate for the CSR's key, with the identity the token names.
pub async fn enroll(
    state: &AppState,
    request: &EnrollRequest,
) -> Result<CertificateBundle, ApiError> {
    let token: JoinToken = request.token.parse().map_err(|e| {
        ApiError::unauthorized(format!("join token is malformed: {e}")).reason(Reason::BadToken)
    })?;
    let cluster = state.cluster.load_full();
    // A token pins a root; one made before a root rotation pins the previous root, which
    // stays trusted (and in the bundle) until it is retired.
    if !cluster
        .roots()
        .iter()
        .any(|root| Fingerprint::of(root) == token.root_hash())
    {
        return Err(ApiError::unauthorized(format!(
            "this join token is for another cluster: it pins root CA sha256:{}, this server's root CA is sha256:{}",
            token.root_hash(),
            Fingerprint::of(&cluster.root)
        ))
        .reason(Reason::BadToken));
    }
    let now = state.now();
    let secret_sha256 = Fingerprint::of(token.secret().as_bytes()).to_string();
    let record = match state.store.token(token.id()).await? {
        None => return Err(token_refusal(&token, TokenUse::Unknown)),
        Some(record) => match record.clone().check(&secret_sha256, now.unix_timestamp()) {
            TokenUse::Accepted(record) => *record,
            refused @ TokenUse::UsedUp { .. } => {
                // The same enrollment asked again, by the holder of the key it was for
                // (an agent that stopped before it saved the answer): the same answer.
                if let Some(bundle) = replay(state, &record, &request.csr).await? {
                    return Ok(bundle);
                }
                return Err(token_refusal(&token, refused));
            }
            refused => return Err(token_refusal(&token, refused)),
        },
    };
    let actor = format!("token:{}", token.id());
    let role = match Role::parse(&record.role) {
        Some(role @ (Role::Node | Role::App)) => role,
        _ => {
            return Err(ApiError::internal(format!(
                "token {} has role {}",
                record.id, record.role
            )));
        }
    };
    let csr = read_csr(&request.csr)?;
    let policy = CsrPolicy {
        profile: Profile::Client,
        validity: match role {
            Role::App => state.settings.app_validity,
            _ => state.settings.node_validity,
        },
        subject: subject_rule(&record, &csr)?,
        subject_alt_names: SanRule::Replace(Vec::new()),
    };
    let issue = policy.decide(&csr).map_err(|e| {
        ApiError::forbidden(e.to_string())
            .reason(Reason::Policy)
            .target(crate::text::bounded(&csr.subject().to_string(), 128))
    })?;
    let subject = issue.subject.to_string();
    if let Some(why) = reserved_subject(&issue.subject) {
        return Err(ApiError::forbidden(why)
            .reason(Reason::ReservedSubject)
            .target(subject));
    }
    let how = Issuance {
        ca: CLIENT_CA,
        role,
        owner: actor.clone(),
        renewed_from: None,
        actor: actor.clone(),
        action: "enroll",
    };
    let (issued, certificate, event) = state.sign(&issue, &how)?;
    // A node's name is its own; an app may share its subject with other instances of the
    // app, never with the server's or a node's certificates.
    let exclusive_of = match role {
        Role::Node => ["admin", "server", "node", "app", "service"].as_slice(),
        _ => ["admin", "server", "node"].as_slice(),
    };
    let enrollment = Enrollment {
        token_id: record.id.clone(),
        secret_sha256,
        now: now.unix_timestamp(),
        certificate,
        event,
        exclusive_of: exclusive_of.iter().map(|r| (*r).to_owned()).collect(),
    };
    match state.store.enroll(&enrollment).await? {
        EnrollOutcome::Enrolled => {}
        EnrollOutcome::Refused(refused) => return Err(token_refusal(&token, refused)),
        EnrollOutcome::SubjectTaken(_)
            if let Some(bundle) = replay(state, &record, &request.csr).await? =>
        {
            return Ok(bundle);
        }
        EnrollOutcome::SubjectTaken(holder) if role == Role::Node => {
            return Err(ApiError::conflict(format!(
                "node {} is enrolled already (identity serial {}, valid until {}); a node enrolls again only by renewing with its current identity, or after 'evergreen node replace {}'",
                issue.subject.get(&NameAttribute::CommonName).unwrap_or_default(),
                holder.serial,
                rfc3339(holder.not_after),
                issue.subject.get(&NameAttribute::CommonName).unwrap_or_default(),
            ))
            .reason(Reason::NameTaken)
            .target(subject));
        }
        EnrollOutcome::SubjectTaken(holder) => {
            return Err(ApiError::forbidden(format!(
                "{subject} is the subject of a {} certificate (serial {}); an app token cannot enroll it",
                holder.role, holder.serial
            ))
            .reason(Reason::ReservedSubject)
            .target(subject));
        }
    }
    state
        .metrics
        .issued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state
        .metrics
        .enrolled
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    bundle(state, &issued, CLIENT_CA)
}

/// The certificate this token already enrolled for the CSR's key, if it is live: a
/// repeated enrollment gets the answer it got the first time, and counts no use. Only the
/// holder of that key can sign such a CSR, and it was that token's to enroll.
async fn replay(
    state: &AppState,
    token: &TokenRecord,
    csr_b64: &str,
) -> Result<Option<CertificateBundle>, ApiError> {
    let csr = read_csr(csr_b64)?;
    let owner = format!("token:{}", token.id);
    let now = state.now().unix_timestamp();
    let key = csr.public_key().spki_der();
    let enrolled = state
        .store
        .certificates_by_subject(&csr.subject().to_string())
        .await?
        .into_iter()
        .filter(|c| c.owner == owner && c.status(now) == "active" && c.renewed_from.is_none())
        .find(|c| {
            evergreen_pki::CertificateInfo::from_der(&c.der.clone().into())
                .is_ok_and(|info| info.public_key == key)
        });
    let Some(enrolled) = enrolled else {
        return Ok(None);
    };
    let cluster = state.cluster.load();
    let chain = cluster
        .generations(CLIENT_CA)
        .find(|(ca, _)| {
            evergreen_pki::chain::is_signed_by(&enrolled.der.clone().into(), ca).unwrap_or(false)
        })
        .map(|(ca, chain)| pem::encode_certificates(std::iter::once(ca).chain(chain)));
    Ok(chain.map(|chain| kyma_bundle(&enrolled.der, &chain)))
}

/// The Kyma answer: the certificate with its chain, alone, and the CA chain.
pub(crate) fn bundle(
    state: &AppState,
    issued: &evergreen_pki::IssuedCertificate,
    ca: &str,
) -> Result<CertificateBundle, ApiError> {
    let cluster = state.cluster.load();
    let ca = cluster
        .ca(ca)
        .ok_or_else(|| ApiError::internal(format!("no CA {ca}")))?;
    Ok(kyma_bundle(&issued.der, &ca.bundle_pem()))
}

/// The Kyma answer for a new certificate: base64 of PEM of the chain, the leaf, the CA.
pub fn kyma_bundle(leaf_der: &[u8], chain_pem: &str) -> CertificateBundle {
    let leaf = pem::encode("CERTIFICATE", leaf_der);
    CertificateBundle {
        crt: encode_pem(&format!("{leaf}{chain_pem}")),
        client_crt: encode_pem(&leaf),
        ca_crt: encode_pem(chain_pem),
    }
}

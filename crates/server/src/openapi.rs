//! `/v1/openapi.json`: the API's description, generated from the router ([`crate::routes`]
//! registers every route through it, so a route cannot be served undocumented) and from the
//! request and answer types of `evergreen_api`.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};

/// The name of the mutual-TLS security scheme; its scopes are the caller roles.
pub const MTLS: &str = "mtls";

/// The document without paths: what the router adds to.
pub fn base() -> OpenApi {
    let tags = [
        (
            "trust",
            "What anyone may read to trust the cluster: CA bundle, CRLs",
        ),
        (
            "kyma",
            "Enrolment with a join token and renewal with the current certificate (Kyma's shape)",
        ),
        (
            "inventory",
            "Every certificate the cluster issued, and revocation",
        ),
        (
            "tokens",
            "Join tokens: who may enroll as which node or subject",
        ),
        (
            "nodes",
            "Enrolled nodes: the addresses `{ip}` stands for, replacement, agentless bundles",
        ),
        (
            "named",
            "Named certificates served by cluster services (Redis' and Event Streams' shapes)",
        ),
        (
            "ca",
            "Live CA rotation from a staged directory (k3s' layout)",
        ),
        ("keys", "Service-account signing keys"),
        ("agent", "What the node agent calls"),
        ("observe", "Health, metrics and this document"),
    ];
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Evergreen")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Keeps a cluster's certificates from ever lapsing.\n\n\
                     Callers authenticate with a client certificate of the cluster (mutual TLS); \
                     the security requirement of each operation names the roles it admits \
                     (`admin`, `node`, `app`). Operations without one are open to anyone. \
                     Every refusal answers `{\"code\",\"error\"}` JSON. Base64 fields carry PEM text.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    MTLS,
                    SecurityScheme::MutualTls {
                        description: Some(
                            "A client certificate issued by the cluster's client CA; its role \
                             (admin, node, app) is read from the inventory."
                                .into(),
                        ),
                        extensions: None,
                    },
                )
                .build(),
        ))
        .tags(Some(
            tags.into_iter()
                .map(|(name, about)| TagBuilder::new().name(name).description(Some(about)).build()),
        ))
        .build()
}

/// Operations that name no security requirement are open: say so explicitly (an empty
/// requirement), so that tools do not read them as "unspecified".
fn mark_open(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            if operation.security.is_none() {
                operation.security = Some(vec![SecurityRequirement::default()]);
            }
        }
    }
}

/// The whole document, as the server serves it.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = crate::routes::api().into_openapi();
        mark_open(&mut document);
        document
    })
}

/// The document as JSON (for tests and tools).
pub fn json() -> serde_json::Value {
    serde_json::to_value(document()).expect("the OpenAPI document serializes")
}

/// Every operation as `(METHOD, path)`, sorted.
pub fn operations() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let paths: &BTreeMap<String, utoipa::openapi::PathItem> = &document().paths.paths;
    for (path, item) in paths {
        for (method, operation) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if operation.is_some() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "observe",
    operation_id = "openapi",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| {
        serde_json::to_string_pretty(document()).expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
}

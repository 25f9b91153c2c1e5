//! What `/v1/openapi.json` is made of besides the routes: the document's info, tags and
//! security scheme, and the rules applied once the router has added every route (see
//! [`crate::routes::document`]: a route cannot be served undocumented). Request and answer
//! schemas come from the types of `evergreen_api`.
use std::collections::BTreeMap;

use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
    ResponseBuilder,
};

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
                .schema_from::<evergreen_api::ErrorBody>()
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

/// What the router cannot say of each operation, said once for all of them: every refusal
/// answers `{"code","error"}` (4XX), every server error too (5XX); and an operation that
/// names no security requirement is open, said explicitly (an empty requirement) so that
/// tools do not read it as "unspecified".
pub fn finish(document: &mut OpenApi) {
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
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
            let responses = &mut operation.responses.responses;
            responses
                .entry("4XX".into())
                .or_insert_with(|| error("Refused: `{\"code\",\"error\"}`"));
            responses
                .entry("5XX".into())
                .or_insert_with(|| error("Server error"));
            if operation.security.is_none() {
                operation.security = Some(vec![SecurityRequirement::default()]);
            }
        }
    }
}

/// Every operation of `document` as `(METHOD, path)`, sorted.
pub fn operations(document: &OpenApi) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let paths: &BTreeMap<String, utoipa::openapi::PathItem> = &document.paths.paths;
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

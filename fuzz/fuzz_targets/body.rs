//! Request bodies arrive from the network: every route's JSON type is read the way the
//! server reads it ([`evergreen_api::body::parse_object`], with the line breaks vendors'
//! recipes leave in PEM fields), and must parse or fail with a message, never panic.
#![no_main]

use evergreen_api::body::parse_object;
use evergreen_api::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_object::<EnrollRequest>(data);
    let _ = parse_object::<RenewalRequest>(data);
    let _ = parse_object::<AgentIssueRequest>(data);
    let _ = parse_object::<UpdateCert>(data);
    let _ = parse_object::<UpdateCerts>(data);
    let _ = parse_object::<RevocationRequest>(data);
    let _ = parse_object::<TokenRequest>(data);
    let _ = parse_object::<NodeAddresses>(data);
    let _ = parse_object::<NamedCertificateSpec>(data);
    let _ = parse_object::<RotateRequest>(data);
    let _ = parse_object::<LabelRequest>(data);
    let _ = parse_object::<TypeRequest>(data);
    let _ = parse_object::<AgentStatus>(data);
    let _ = parse_object::<CaRotateRequest>(data);
    let _ = parse_object::<ServiceKeyRotation>(data);
    // The PEM and base64 fields, decoded as the handlers decode them.
    if let Ok(request) = parse_object::<RenewalRequest>(data) {
        let _ = decode_pem(&request.csr);
    }
});

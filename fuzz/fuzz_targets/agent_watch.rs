//! What the agent receives from a server: a watch answer is judged (its trust bundle, and
//! each credential's PEM, key and attestation) before anything is installed. Any answer
//! must be judged or refused, never panic. The roots trusted are the answer's own first
//! certificate, so the proof paths run too.
#![no_main]

use evergreen_agent::trust::Trust;
use evergreen_pki::OffsetDateTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let roots = serde_json::from_slice::<evergreen_api::AgentWatch>(data)
        .ok()
        .and_then(|w| evergreen_api::decode_pem(&w.trust_bundle).ok())
        .and_then(|pem| evergreen_pki::pem::parse_certificates("bundle", &pem).ok())
        .map(|mut certs| {
            certs.truncate(1);
            certs
        })
        .unwrap_or_default();
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let _ = evergreen_agent::judge_watch(&Trust::in_memory(roots), data, now);
    let _ = evergreen_agent::judge_watch(&Trust::in_memory(Vec::new()), data, now);
});

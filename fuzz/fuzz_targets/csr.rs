//! A CSR arrives from the network: parsing it, as DER or PEM, must never panic, and a
//! CSR that parses must go through the policy without panicking either.
#![no_main]

use evergreen_pki::policy::CsrPolicy;
use evergreen_pki::{CertificateRequest, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for parsed in [
        CertificateRequest::from_der(data),
        CertificateRequest::from_pem("fuzz", data),
    ] {
        if let Ok(csr) = parsed {
            for profile in [Profile::Server, Profile::Client, Profile::Peer] {
                let _ = CsrPolicy::new(profile).decide(&csr);
            }
            let _ = csr.subject().to_string();
        }
    }
});

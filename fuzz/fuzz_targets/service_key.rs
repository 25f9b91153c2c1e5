//! `service.key` is staged by operators (k3s's recipe appends keys to it with `cat`): any
//! file must read as signing keys or fail with a message, and what reads must publish.
#![no_main]

use evergreen_pki::service_keys::{ServiceKeys, jwk, key_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = ServiceKeys::from_pem("fuzz", data) {
        for key in keys.public_keys() {
            let _ = key_id(&key);
            let _ = jwk(&key);
        }
    }
});

//! A staged CA directory comes from operators and other tools (k3s's scripts, openssl
//! recipes): any set of files must map to Evergreen's names and read, or be refused with
//! the file named, never panic. Input: files as `name\0contents\0name\0contents…`.
#![no_main]

use std::collections::BTreeMap;

use evergreen_pki::staged::{Staged, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut listing = BTreeMap::new();
    let mut parts = data.split(|b| *b == 0);
    while let (Some(name), Some(contents)) = (parts.next(), parts.next()) {
        listing.insert(String::from_utf8_lossy(name).into_owned(), contents.to_vec());
    }
    if let Ok(resolved) = resolve(&listing)
        && let Ok(staged) = Staged::decode(&resolved.files)
    {
        let _ = staged.pool();
    }
});

//! Query strings and durations come from the network and the command line: each route's
//! parameters, page cursors and `30d`-style durations must parse or fail cleanly.
#![no_main]

use evergreen_api::query::{InventoryParams, RotateParams, WatchParams, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = parse::<InventoryParams>(text) {
        let _ = params.after();
        if let Some(within) = &params.expiring_within {
            let _ = evergreen_api::duration::parse(within);
        }
    }
    let _ = parse::<WatchParams>(text);
    let _ = parse::<RotateParams>(text);
    let _ = evergreen_api::duration::parse(text);
});

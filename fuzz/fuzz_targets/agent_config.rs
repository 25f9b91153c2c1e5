//! The agent's TOML configuration is written by operators: any text must load or be
//! refused with the reason.
#![no_main]

use evergreen_agent::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = Config::from_toml(text)
    {
        for c in &config.certificates {
            let _ = c.verify_timeout();
            let _ = config.for_name(&c.name);
        }
    }
});

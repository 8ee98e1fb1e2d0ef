//! GitHub payload parsing and the deploy decision (`decide`), for each event
//! kind deploy-trigger treats differently.
//!
//! Input: `<event selector byte><JSON payload>`. A deploy decision must be a
//! deploy request that kiln's own strict decoder reads back unchanged, for
//! an environment the configuration names, with a 40-hex commit id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    kiln_fuzz::github::check(selector, json);
});

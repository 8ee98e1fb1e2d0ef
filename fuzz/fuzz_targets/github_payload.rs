//! GitHub payload parsing and the deploy decision (`decide`), for each event
//! kind deploy-trigger treats differently, and `DEPLOY_PATHS` parsing.
//!
//! Input: `<event selector byte><JSON payload>`, or, when the selector has
//! bit 0x40, `<selector><DEPLOY_PATHS value>\n<JSON payload>`. A deploy
//! decision must be a deploy request that kiln's own strict decoder reads
//! back unchanged, for an environment the configuration names, with a
//! 40-hex commit id, and never for a push whose head commit carries a skip
//! marker; a skip must be borne out by the payload (the marker, or no
//! listed file matching the environment's globs in a complete list); a bad
//! `DEPLOY_PATHS` must be refused with an error naming it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    kiln_fuzz::github::check(selector, json);
});

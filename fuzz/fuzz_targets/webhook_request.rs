//! The whole webhook path of deploy-trigger: body decoding (plain and
//! base64), GitHub's headers, the signature header, the content type, the
//! payload and the routing decision, through `handle` with in-memory ports.
//!
//! Input: `<flags byte><event name>\n<body>`. The flags choose how the
//! request is dressed (see [`Flags`]), so both correctly signed bodies (which
//! reach the payload parser) and forged ones are explored.
//!
//! Checked for every input: no panic; the status is one the handler
//! documents; the reply is JSON; nothing is published unless the reply says
//! `queued` (then exactly once); a request that is not correctly signed is
//! never accepted; the secret never appears in the reply.
#![no_main]

use kiln_fuzz::webhook::{self, Flags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((flags, event, body)) = webhook::split(data) else {
        return;
    };
    webhook::check(Flags(flags), event, body);
});

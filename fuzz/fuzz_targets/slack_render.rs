//! alert-forwarder's classification and Slack rendering, on anything it
//! can be sent: the message is always within Slack's limits (so Slack never
//! refuses it as `invalid_blocks`), and text from an event never becomes a
//! mention or a link.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kiln_fuzz::slack::check(data);
});

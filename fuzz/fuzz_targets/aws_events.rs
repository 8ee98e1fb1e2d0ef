//! kiln's tolerant AWS event decoders (SNS, EventBridge, ECS task state
//! change, CloudWatch alarms in both shapes, AWS timestamps) and its strict
//! message decoders (deploy request, alert), on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kiln_fuzz::events::check(data);
});

//! `X-Hub-Signature-256` parsing: any bytes either parse to a digest that
//! formats back to the same lowercase header, or are refused; verification
//! against a fixed secret never panics.
#![no_main]

use deploy_trigger::signature;
use kiln::SecretString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match signature::parse_header(data) {
        Ok(parsed) => {
            let hex: String = parsed
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let trimmed = data.trim_ascii();
            assert_eq!(
                trimmed,
                format!("sha256={hex}").as_bytes(),
                "accepted a non-canonical header"
            );
            let secrets = [SecretString::new(kiln_fuzz::SECRET)];
            let _ = signature::verify(data, &parsed, &secrets);
        }
        Err(err) => {
            // The reason describes the shape, never echoes the value.
            let text = err.to_string();
            assert!(text.starts_with("X-Hub-Signature-256"), "{text}");
        }
    }
});

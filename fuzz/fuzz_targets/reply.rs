//! The client's reply parser on arbitrary bytes: no panic; a reply is exact exactly when it is the
//! server's own `JAM hh:mm:ss` CR LF for that time, and then it has no differences to name.
#![no_main]

use jam::protocol::time_reply;
use jam::reply::{LineEnd, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    match Reply::parse(raw) {
        Reply::Time(t) => {
            assert_eq!(t.is_exact(), raw == time_reply(t.time), "{raw:?}");
            assert_eq!(t.differences().is_empty(), t.is_exact(), "{raw:?}");
            assert_eq!(t.line_end, LineEnd::split(raw).1);
            if t.padded {
                let clock = t.time.hh_mm_ss();
                assert!(raw.windows(8).any(|w| w == clock), "{raw:?}");
            }
        }
        Reply::Error(message) => assert!(raw.starts_with(b"ERR "), "{message:?}"),
        Reply::Invalid(text) => assert!(raw.starts_with(text), "{raw:?}"),
    }
});

//! PROXY protocol header parsing on arbitrary bytes: no panic; a complete header never claims
//! more bytes than it was given or than the cap; and the verdict never changes when more bytes
//! follow a complete header (the session's own data must not change what the header meant).
#![no_main]

use jam::proxy::{MAX_HEADER, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    match parse(input) {
        Ok(Some(header)) => {
            assert!(header.len <= input.len() && header.len <= MAX_HEADER);
            let mut longer = input.to_vec();
            longer.extend_from_slice(b"TIME\r\n");
            assert_eq!(parse(&longer), Ok(Some(header)));
        }
        Ok(None) => assert!(input.len() < MAX_HEADER),
        Err(_) => {}
    }
});

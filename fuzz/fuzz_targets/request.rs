//! Request parsing and error-line encoding on arbitrary lines: no panic, and an error line is
//! one line of UTF-8 without control characters, echoing at most 32 characters.
#![no_main]

use jam::protocol::{ErrorReply, MAX_ECHO_CHARS, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Request::Unknown(word) = Request::parse(line) {
        let reply = ErrorReply::UnknownCommand(word).to_bytes();
        let text = std::str::from_utf8(&reply).expect("error lines are UTF-8");
        let body = text.strip_suffix("\r\n").expect("ends with CR LF");
        assert!(!body.chars().any(char::is_control), "{body:?}");
        let echo = body
            .strip_prefix("ERR unknown command \"")
            .and_then(|rest| rest.strip_suffix("\" (try TIME or QUIT)"))
            .expect("the fixed frame around the echo");
        assert!(echo.chars().count() <= MAX_ECHO_CHARS, "{echo:?}");
    }
});

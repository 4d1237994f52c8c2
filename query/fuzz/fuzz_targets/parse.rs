//! Feeds arbitrary bytes (as lossy UTF-8) to the DriftQL parser. Besides "never panics", it
//! checks the printer: a parsed statement prints as canonical DriftQL that parses again and
//! prints identically.
#![no_main]

use driftdb_query_fuzz::parser::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(stmt) = parse(&text) else {
        return;
    };
    let printed = stmt.to_string();
    match parse(&printed) {
        Ok(again) => assert_eq!(again.to_string(), printed, "printing is not a fixed point"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
});

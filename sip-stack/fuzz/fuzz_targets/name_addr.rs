//! Any From/To/Contact value: a name-addr or an error, never a panic; what parses prints back
//! as it was given and parses again the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::name_addr::NameAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = NameAddr::parse(text) {
        assert_eq!(parsed.as_str(), text.trim());
        assert_eq!(NameAddr::parse(&parsed.to_string()), Ok(parsed));
    }
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| breakglass::fuzzing::sandbox_http(data));

//! A request as a rabbit-rpc server reads it: properties (AMQP 0-9-1
//! content header), then the body. See `rabbit_rpc::fuzzing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rabbit_rpc::fuzzing::request(data));

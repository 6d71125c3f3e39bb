//! Any bytes on the serial line: the decoder never panics, and whatever it
//! accepts encodes back to a frame that decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nemascope_edge::link::protocol::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    let mut got = Vec::new();
    d.feed(data, |m| got.push(m));
    for m in got {
        let mut again = Decoder::new();
        let mut back = Vec::new();
        again.feed(&m.encode(), |x| back.push(x));
        assert_eq!(back, [m]);
    }
});

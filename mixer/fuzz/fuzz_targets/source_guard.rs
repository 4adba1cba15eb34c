//! Packets from many addresses at any times: the guard never panics, learns only after a run,
//! and once it holds a source keeps it while that source keeps sending.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mixer::source::{SourceGuard, SourcePolicy, Verdict};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut guard = SourceGuard::new(SourcePolicy::default(), Some("127.0.0.1:4000".parse().unwrap()));
    for record in data.chunks_exact(5) {
        let &[step, host, port, ssrc, seq] = record else { continue };
        now += Duration::from_millis(u64::from(step) * 10);
        let from = SocketAddr::from(([127, 0, 0, host % 4], 4000 + u16::from(port % 4)));
        let before = guard.source();
        let verdict = if ssrc == 0xff {
            let _ = guard.check_rtcp(from, None);
            continue;
        } else {
            guard.check_rtp(now, from, u32::from(ssrc % 3), u16::from(seq))
        };
        match verdict {
            Verdict::Accept => assert_eq!(before, Some(from)),
            Verdict::Learned => assert_eq!(guard.source(), Some(from)),
            Verdict::Drop => assert_eq!(guard.source(), before),
        }
    }
});

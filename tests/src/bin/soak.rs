//! A soak generator: participants that keep joining and leaving a room for a long time, each
//! call authenticated and streaming a PCMU tone from its own socket, while the gateway's
//! resident memory and open descriptors are read from `/proc` every ten seconds. What must
//! hold: both stay flat, and every call is answered and hears the room.
//!
//! ```sh
//! soak --gateway 127.0.0.1:5060 --room 1000 --users 200 --password secret --minutes 30 --pid PID
//! ```
//! `ops/soak.sh` starts a release gateway, creates the users and the room, and runs it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2e::load::{open_fds, or_exit, parse_flags, rss_kib, value, Target};
use e2e::sipua::{self, ToneStream};

struct Options {
    to: Target,
    minutes: u64,
    pid: u32,
}

fn options() -> Result<Options, String> {
    let mut o = Options { to: Target::new(200, "soak", "soak-password"), minutes: 30, pid: 0 };
    parse_flags(1, |flag, v| {
        if o.to.set(flag, v)? {
            return Ok(true);
        }
        match flag {
            "--minutes" => o.minutes = value(flag, v)?,
            "--pid" => o.pid = value(flag, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if o.pid == 0 {
        return Err("--pid of the gateway is needed to read its memory".into());
    }
    Ok(o)
}

/// Resident memory in KiB and open descriptors of `pid`.
fn sample(pid: u32) -> (u64, usize) {
    (rss_kib(pid), open_fds(pid))
}

/// A call's media while it lasts, sent and read by the one pacing thread (a thread per call
/// waking every 20 ms would load the machine more than the gateway does).
struct Leg {
    socket: UdpSocket,
    to: SocketAddr,
    stream: ToneStream,
    received: Arc<AtomicU64>,
    until: Instant,
}

/// Every 20 ms: a packet to the gateway from each live leg, and whatever came back counted.
fn pace(legs: &Mutex<Vec<Leg>>, deadline: Instant) {
    let mut tick = Instant::now();
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        let live = {
            let mut legs = legs.lock().unwrap_or_else(PoisonError::into_inner);
            legs.retain(|l| l.until > now);
            for leg in legs.iter_mut() {
                let _ = leg.socket.send_to(&leg.stream.next_packet(), leg.to);
                while leg.socket.recv(&mut buf).is_ok() {
                    leg.received.fetch_add(1, Ordering::Relaxed);
                }
            }
            legs.len()
        };
        if live == 0 && now > deadline {
            return;
        }
        // Behind (an overloaded machine): go on from now rather than send a burst.
        tick = (tick + Duration::from_millis(20)).max(now);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    failed: AtomicU64,
    silent: AtomicU64,
}

fn main() {
    let o = or_exit(options());
    // The gateway before any call: what memory must come back near once every call has left.
    let before = sample(o.pid);
    let deadline = Instant::now() + Duration::from_secs(o.minutes * 60);
    let counts = Arc::new(Counts::default());
    let legs: Arc<Mutex<Vec<Leg>>> = Arc::default();
    let pacer = std::thread::spawn({
        let legs = legs.clone();
        move || pace(&legs, deadline)
    });
    let mut threads = Vec::new();
    for i in 0..o.to.users {
        let (user, password, room, gateway) =
            (format!("{}{i}", o.to.prefix), o.to.password.clone(), o.to.room.clone(), o.to.gateway);
        let (counts, legs) = (counts.clone(), legs.clone());
        threads.push(std::thread::spawn(move || {
            // The first calls ramp up over 10 ms per participant, not all at once.
            std::thread::sleep(Duration::from_millis(10 * i as u64));
            // Staggered: calls last 5 to 34 s, so the room's membership keeps changing.
            let mut n = i as u64;
            while Instant::now() < deadline {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let length = Duration::from_secs(5 + (n >> 33) % 30)
                    .min(deadline.saturating_duration_since(Instant::now()));
                let Ok(rtp) = UdpSocket::bind("127.0.0.1:0") else { continue };
                let local = rtp.local_addr().expect("bound");
                match sipua::call(gateway, &user, &password, &room, local) {
                    Ok(call) => {
                        let received = Arc::new(AtomicU64::new(0));
                        rtp.set_nonblocking(true).expect("non-blocking");
                        let leg = Leg {
                            socket: rtp,
                            to: call.gateway_rtp,
                            stream: ToneStream::new(n as u32, 300.0 + (i % 40) as f64 * 50.0),
                            received: received.clone(),
                            until: Instant::now() + length,
                        };
                        legs.lock().unwrap_or_else(PoisonError::into_inner).push(leg);
                        std::thread::sleep(length);
                        counts.calls.fetch_add(1, Ordering::Relaxed);
                        if received.load(Ordering::Relaxed) < 10 {
                            counts.silent.fetch_add(1, Ordering::Relaxed);
                        }
                        if call.hang_up().is_err() {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("{user}: {e}");
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }));
    }
    println!("minute,rss_kib,fds,calls,failed,silent");
    let start = Instant::now();
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let (rss, fds) = sample(o.pid);
        let c = &counts;
        let (calls, failed, silent) = (
            c.calls.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.silent.load(Ordering::Relaxed),
        );
        println!("{:.1},{rss},{fds},{calls},{failed},{silent}", start.elapsed().as_secs_f64() / 60.0);
        samples.push((rss, fds));
        std::thread::sleep(Duration::from_secs(10));
    }
    for t in threads {
        let _ = t.join();
    }
    let _ = pacer.join();
    let (rss, fds) = sample(o.pid);
    // A minute later, when calls whose ACK or BYE was lost have timed out too (no ACK: 32 s;
    // no RTP: 30 s): what the gateway still holds once it has nothing to do.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(10));
        let (rss, fds) = sample(o.pid);
        println!("{:.1},{rss},{fds},,,", start.elapsed().as_secs_f64() / 60.0);
    }
    let idle = sample(o.pid);
    let max_rss = samples.iter().map(|s| s.0).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let first = samples.get(1).copied().unwrap_or((0, 0));
    println!(
        "summary: calls {} failed {} silent {}; RSS KiB before {} at 10 s {} max {} after {} idle {}; \
         fds before {} at 10 s {} max {} after {} idle {}",
        counts.calls.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.silent.load(Ordering::Relaxed),
        before.0,
        first.0,
        max_rss,
        rss,
        idle.0,
        before.1,
        first.1,
        max_fds,
        fds,
        idle.1
    );
}

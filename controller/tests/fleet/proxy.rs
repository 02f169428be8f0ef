//! A TCP proxy between a workcell and the hub that can cut, blackhole, delay and flap the link: the workcell's only
//! route to the hub, on loopback.
//!
//! `cut` resets every open connection and refuses new ones (a cable pulled, a firewall's RST); `blackhole` accepts
//! and forwards nothing, in either direction (a dead WAN: only timeouts tell); `delay` holds every chunk for a while
//! before forwarding it; `pass` forwards. Flapping is a schedule of cuts and passes the harness drives.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the link does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Forward.
    Pass,
    /// Reset every connection and refuse new ones.
    Cut,
    /// Accept, forward nothing.
    Blackhole,
    /// Forward each chunk after this delay.
    Delay(Duration),
}

struct Shared {
    mode: Mode,
    /// Bumped by every cut: connections of an older generation close at once.
    generation: u64,
}

/// A running proxy.
pub struct Proxy {
    /// The port a client connects to.
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    _runtime: std::thread::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Starts a proxy to 127.0.0.1:`target`.
    pub fn start(target: u16) -> Proxy {
        let shared = Arc::new(Mutex::new(Shared { mode: Mode::Pass, generation: 0 }));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let mut stopped = stopped;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let s = Arc::clone(&s);
                            tokio::spawn(serve(client, target, s));
                        }
                    }
                }
            });
        });
        Proxy { port, shared, _runtime: thread, stop }
    }

    /// Sets what the link does from now on.
    pub fn set(&self, mode: Mode) {
        let mut s = self.shared.lock().unwrap();
        if matches!(mode, Mode::Cut | Mode::Blackhole) {
            s.generation += 1;
        }
        s.mode = mode;
    }

    /// What the link does now.
    pub fn mode(&self) -> Mode {
        self.shared.lock().unwrap().mode
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Makes dropping `s` reset the connection (RST) rather than close it. A zero linger never blocks the thread on
/// drop, which is what tokio's deprecation warns of: it discards what is unsent at once, which is the point here.
#[allow(deprecated)]
fn reset(s: &TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
}

fn now(s: &Mutex<Shared>) -> (Mode, u64) {
    let s = s.lock().unwrap();
    (s.mode, s.generation)
}

async fn serve(client: TcpStream, target: u16, shared: Arc<Mutex<Shared>>) {
    let (mode, generation) = now(&shared);
    match mode {
        Mode::Cut => {
            reset(&client);
            return;
        }
        Mode::Blackhole => {
            // Hold the connection and swallow what arrives until the link passes again and the client gives up.
            swallow(client, shared, generation).await;
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pipe(cr, sw, Arc::clone(&shared), generation));
    let down = tokio::spawn(pipe(sr, cw, Arc::clone(&shared), generation));
    let _ = tokio::join!(up, down);
}

async fn swallow(mut client: TcpStream, shared: Arc<Mutex<Shared>>, generation: u64) {
    let mut buf = vec![0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_millis(100), client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            _ => {}
        }
        let (_, g) = now(&shared);
        if g != generation {
            reset(&client);
            return;
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Mutex<Shared>>,
    generation: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_millis(100), from.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                // Idle: a cut since this connection opened ends it.
                let (mode, g) = now(&shared);
                if g != generation && mode == Mode::Cut {
                    return;
                }
                continue;
            }
        };
        let (mode, g) = now(&shared);
        if g != generation {
            // A cut since the connection opened resets it; a blackhole swallows what arrives, as a dead WAN would,
            // for as long as the connection lives.
            if mode == Mode::Cut {
                return;
            }
            continue;
        }
        if let Mode::Delay(d) = mode {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

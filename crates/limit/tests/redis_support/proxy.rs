//! A TCP proxy on loopback between a client and a Redis server that can pass traffic,
//! drop it (read and discard both ways, as a blackholed host whose packets vanish: no RST),
//! stall it (stop reading, so TCP back-pressure holds everything) or delay it (each chunk
//! forwarded after a pause). The mode applies at once to open and new connections; a new
//! upstream (as a DNS name moved by a failover) only to new ones.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU16, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Read and discard everything; new connections are accepted and never forwarded.
    Drop,
    /// Read nothing more.
    Stall,
    /// Forward each chunk after this pause.
    Delay(Duration),
}

const PASS: u64 = 0;
const DROP: u64 = 1;
const STALL: u64 = 2;
/// Delays are stored as `DELAY_BASE + milliseconds`.
const DELAY_BASE: u64 = 16;

/// The proxy; it runs on the current tokio runtime until the test ends.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    mode: Arc<AtomicU64>,
    upstream: Arc<AtomicU16>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU64::new(PASS));
        let upstream = Arc::new(AtomicU16::new(upstream));
        let (shared, target) = (mode.clone(), upstream.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, target.load(Relaxed), shared.clone()));
            }
        });
        Proxy {
            port,
            mode,
            upstream,
        }
    }

    /// Forwards connections made from now on to `127.0.0.1:upstream`.
    pub fn retarget(&self, upstream: u16) {
        self.upstream.store(upstream, Relaxed);
    }

    /// Switches every connection, open or new, to `mode`.
    pub fn set(&self, mode: Mode) {
        let code = match mode {
            Mode::Pass => PASS,
            Mode::Drop => DROP,
            Mode::Stall => STALL,
            Mode::Delay(d) => DELAY_BASE + d.as_millis() as u64,
        };
        self.mode.store(code, Relaxed);
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

async fn serve(client: TcpStream, upstream: u16, mode: Arc<AtomicU64>) {
    // A connection made while dropping never reaches the server, as with a dead host.
    while mode.load(Relaxed) == DROP || mode.load(Relaxed) == STALL {
        if mode.load(Relaxed) == DROP {
            let mut sink = [0u8; 4096];
            let (mut r, _w) = client.into_split();
            while let Ok(n) = r.read(&mut sink).await {
                if n == 0 {
                    return;
                }
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::spawn(pump(cr, sw, mode.clone()));
    tokio::spawn(pump(sr, cw, mode));
}

/// Copies `from` to `to` under the current mode, until either side closes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mode: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if mode.load(Relaxed) == STALL {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A chunk read before the stall began is held too.
        while mode.load(Relaxed) == STALL {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match mode.load(Relaxed) {
            DROP => continue,
            PASS | STALL => {}
            code => tokio::time::sleep(Duration::from_millis(code - DELAY_BASE)).await,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

//! A fake Redis on loopback that answers the few commands the limiter sends with canned
//! replies: what a Redis look-alike, a misbehaving proxy or a corrupted server could say.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The fake's replies (raw RESP) to `SCRIPT LOAD` (`None`: the script's true SHA-1, as
/// Redis answers) and to `EVALSHA`; every other command gets `+OK`.
#[derive(Debug, Clone, Copy)]
pub struct Replies {
    pub script_load: Option<&'static str>,
    pub evalsha: &'static str,
}

/// Listens on a free loopback port; returns `redis://127.0.0.1:<port>/`.
pub async fn start(replies: Replies) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, replies));
        }
    });
    format!("redis://127.0.0.1:{port}/")
}

async fn serve(mut conn: TcpStream, replies: Replies) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = conn.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some((args, used)) = parse_command(&pending) {
            pending.drain(..used);
            let name = args
                .first()
                .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase());
            let reply = match (name.as_deref(), replies.script_load) {
                (Some("SCRIPT"), Some(reply)) => reply.to_owned(),
                (Some("SCRIPT"), None) => {
                    let digest = sha1_smol::Sha1::from(args.last().unwrap())
                        .digest()
                        .to_string();
                    format!("$40\r\n{digest}\r\n")
                }
                (Some("EVALSHA"), _) => replies.evalsha.to_owned(),
                _ => "+OK\r\n".to_owned(),
            };
            if conn.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The first whole command (a RESP array of bulk strings) in `bytes`, and the bytes it
/// takes; `None` until one has arrived whole.
fn parse_command(bytes: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let (count, mut at) = parse_header(bytes, 0, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = parse_header(bytes, at, b'$')?;
        let end = start + len;
        if bytes.len() < end + 2 {
            return None;
        }
        args.push(bytes[start..end].to_vec());
        at = end + 2;
    }
    Some((args, at))
}

/// `<kind><number>\r\n` at `at`: the number and where the line ends.
fn parse_header(bytes: &[u8], at: usize, kind: u8) -> Option<(usize, usize)> {
    if *bytes.get(at)? != kind {
        return None;
    }
    let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
    let number = std::str::from_utf8(&bytes[at + 1..line_end])
        .ok()?
        .parse()
        .ok()?;
    Some((number, line_end + 2))
}

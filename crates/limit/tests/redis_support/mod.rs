//! Test helpers shared by the Redis test files: `redis-server` processes on loopback (one
//! server, a three-node cluster), a TCP proxy that can drop, stall and delay traffic, and a
//! fake server with canned replies.
#![allow(dead_code)] // each test file uses its own part of it

pub mod fake;
pub mod proxy;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a loopback port; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// The port it listens on (its TLS port, for a TLS server).
    pub port: u16,
    extra: Vec<String>,
}

impl Server {
    /// Starts redis-server on a free loopback port, or `None` when skipping is allowed.
    pub fn start() -> Option<Server> {
        Self::start_with(Vec::new())
    }

    /// As [`start`](Self::start), with more `redis-server` arguments.
    pub fn start_with(extra: Vec<String>) -> Option<Server> {
        Self::start_on(free_port(), extra)
    }

    /// As [`start_with`](Self::start_with), on `port`.
    pub fn start_on(port: u16, extra: Vec<String>) -> Option<Server> {
        let mut s = Server {
            child: None,
            port,
            extra,
        };
        if !s.spawn() {
            return None;
        }
        Some(s)
    }

    /// Starts (again) the process, on the same port; waits until it accepts connections.
    pub fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => self.child = Some(c),
            Err(e) => {
                // CI sets PRISM_REQUIRE_REDIS, so there a missing server fails the run.
                if std::env::var_os("PRISM_REQUIRE_REDIS").is_some() {
                    panic!("redis-server not found on PATH ({e}) and PRISM_REQUIRE_REDIS is set");
                }
                eprintln!("skipping: redis-server not found on PATH ({e}); set PRISM_REQUIRE_REDIS=1 to fail instead");
                return false;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-master Redis Cluster on loopback (`redis-cli --cluster create`), its files in a
/// temporary directory.
pub struct Cluster {
    /// The nodes, masters all.
    pub nodes: Vec<Server>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts three nodes and joins them into a cluster.
    pub fn start() -> Option<Cluster> {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with more arguments for every node.
    pub fn start_with(more: &[&str]) -> Option<Cluster> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("prism-redis-cluster-{}-{n}", std::process::id()));
        let mut nodes = Vec::new();
        for i in 0..3 {
            let node_dir = dir.join(i.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ];
            let mut extra: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            extra.extend(["--dir".to_owned(), node_dir.display().to_string()]);
            extra.extend(more.iter().map(|a| a.to_string()));
            nodes.push(Server::start_with(extra)?);
        }
        let cluster = Cluster { nodes, dir };
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (installed with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster
            .nodes
            .iter()
            .all(|n| redis_cli(n.port, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(cluster)
    }

    /// A seed node's URL.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `redis-cli -p <port> <args>`; its output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

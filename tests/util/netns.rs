//! SSH servers the client cannot reach directly: they run in a private network
//! namespace, and only the first one (the bastion) is exposed on the host's loopback
//! through a bridge.
//!
//! Network namespaces belong to threads on Linux: one thread calls
//! `unshare(CLONE_NEWNET)`, brings its loopback up and starts the sshds (children
//! inherit its namespace). A listener in the host namespace forwards each connection
//! to the bastion through a socket that thread opens inside the namespace (a socket
//! keeps the namespace it was created in, whichever thread uses it). Anything else
//! listening inside is unreachable from the client. Without namespace support the
//! test fails loudly: it never skips.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;

use super::sshd::Sshd;

type Dial = (u16, mpsc::Sender<io::Result<TcpStream>>);

/// Servers in a private network namespace; `servers[0]` is the bastion, reachable on
/// the host at `127.0.0.1:bridge_port`. Their logs are at sshd `LogLevel DEBUG1`.
pub struct Hidden {
    pub servers: Vec<Sshd>,
    pub bridge_port: u16,
}

/// Starts `n` sshds in a fresh network namespace and bridges the first one out;
/// `last_extra` goes into the last server's config (the target's `SetEnv PATH=…`).
pub fn hidden_servers(n: usize, last_extra: &str) -> Hidden {
    let last_extra = last_extra.to_string();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Vec<Sshd>, String>>();
    let (dial_tx, dial_rx) = mpsc::channel::<Dial>();
    let inside = std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) takes no pointers; it moves only this thread
        // (and the children it spawns) into a new network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let e = io::Error::last_os_error();
            let _ = ready_tx.send(Err(format!(
                "unshare(CLONE_NEWNET) failed: {e}; this test needs network namespaces (root, or `unshare -n true` working)"
            )));
            return;
        }
        match Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
        {
            Ok(s) if s.success() => {}
            other => {
                let _ = ready_tx.send(Err(format!(
                    "`ip link set lo up` in the namespace failed: {other:?}"
                )));
                return;
            }
        }
        let servers = (0..n)
            .map(|i| Sshd::start_logging(if i + 1 == n { &last_extra } else { "" }, "DEBUG1"))
            .collect();
        if ready_tx.send(Ok(servers)).is_err() {
            return;
        }
        for (port, reply) in dial_rx {
            let _ = reply.send(TcpStream::connect(("127.0.0.1", port)));
        }
    });
    let servers = match ready_rx.recv() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => match inside.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("the namespace thread ended without starting servers"),
        },
    };
    let bastion_port = servers[0].port;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the bridge");
    let bridge_port = listener.local_addr().expect("bridge address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(outside) = conn else { continue };
            let (tx, rx) = mpsc::channel();
            if dial_tx.send((bastion_port, tx)).is_err() {
                return;
            }
            match rx.recv() {
                Ok(Ok(inner)) => splice(outside, inner),
                _ => drop(outside),
            }
        }
    });
    Hidden {
        servers,
        bridge_port,
    }
}

/// Copies bytes both ways until either side closes.
fn splice(a: TcpStream, b: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => {
            pipe(a, b2);
            pipe(b, a2);
        }
        _ => {
            let _ = a.shutdown(Shutdown::Both);
        }
    }
}

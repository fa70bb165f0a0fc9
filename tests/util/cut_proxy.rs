//! A TCP proxy in front of a loopback sshd that the test can cut: [`CutProxy::cut`]
//! shuts down every connection it carries (as a dropped link or a NAT timeout would),
//! and holds new connections until [`CutProxy::open`], so a test can look at the
//! server's disk between the loss and the client's reconnection; [`CutProxy::refuse`]
//! plays a server that went down.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Shared {
    /// Both ends of every live connection.
    live: Mutex<Vec<TcpStream>>,
    /// Whether new connections are forwarded (else they wait).
    open: Mutex<bool>,
    opened: Condvar,
    accepted: AtomicUsize,
    /// New connections are closed at once (a server that is down).
    refusing: AtomicBool,
}

/// The proxy; its threads live as long as the test process.
pub struct CutProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:to`.
    pub fn start(to: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            open: Mutex::new(true),
            ..Shared::default()
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let mut open = s.open.lock().unwrap();
                while !*open {
                    open = s.opened.wait(open).unwrap();
                }
                drop(open);
                if s.refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if let Err(e) = forward(&s, client, to) {
                    eprintln!("cut proxy: {e}");
                }
            }
        });
        CutProxy { port, shared }
    }

    /// Cuts every live connection and holds new ones until [`CutProxy::open`].
    pub fn cut(&self) {
        *self.shared.open.lock().unwrap() = false;
        for s in self.shared.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again.
    pub fn open(&self) {
        *self.shared.open.lock().unwrap() = true;
        self.shared.opened.notify_all();
    }

    /// From now on closes every new connection at once (and releases held ones so).
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.open();
    }

    /// Connections accepted so far (including ones held).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

/// Copies both ways between `client` and a new connection to the server.
fn forward(s: &Shared, client: TcpStream, to: u16) -> io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", to))?;
    {
        let mut live = s.live.lock().unwrap();
        live.push(client.try_clone()?);
        live.push(server.try_clone()?);
    }
    for (mut from, mut into) in [(client.try_clone()?, server.try_clone()?), (server, client)] {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut into);
            let _ = into.shutdown(Shutdown::Write);
        });
    }
    Ok(())
}

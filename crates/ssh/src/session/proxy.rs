//! Reaching a host the way its ssh config says: directly, through a `ProxyCommand`
//! (a `sh -c` child whose stdin/stdout carry the connection), or through a
//! `ProxyJump` chain (each hop an authenticated SSH connection of its own, with its
//! own host key check, that opens a `direct-tcpip` channel to the next hop). A
//! configured jump is never bypassed: the route comes from the config and nothing
//! else. A failure names the hop it happened at.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::process::Child;

use super::{ConnectOptions, SessionError, SshSession};
use crate::config::ResolvedHost;

/// How to reach one host, and how to reach what carries the connection to it.
#[derive(Clone, Debug)]
pub struct Route {
    /// Connection settings of this host.
    pub opts: ConnectOptions,
    /// What carries the connection.
    pub via: Via,
    /// Everything the config said about this host, for messages (which files were
    /// read) and for what a hop needs beyond [`ConnectOptions`] (its own proxy).
    pub host: ResolvedHost,
}

/// What carries the connection to a host.
#[derive(Clone, Debug)]
pub enum Via {
    /// A TCP connection of our own.
    Direct,
    /// `ProxyCommand`, tokens expanded, run with `sh -c`.
    Command(String),
    /// A `direct-tcpip` channel of an SSH connection to the previous hop.
    Jump(Box<Route>),
}

/// What keeps a session's carrier alive: dropped after the session itself.
/// Only held, never read: dropping it closes the jump connection or kills the command.
#[allow(dead_code)]
pub(super) enum Carrier {
    Jump(SshSession),
    Command(Child),
}

impl Route {
    /// The hops in connection order: the first hop, …, this host last.
    pub fn hops(&self) -> Vec<&Route> {
        let mut hops = vec![self];
        let mut cur = self;
        while let Via::Jump(prev) = &cur.via {
            hops.push(prev);
            cur = prev;
        }
        hops.reverse();
        hops
    }
}

impl SshSession {
    /// Connects along `route`: every jump host in turn (each verified and
    /// authenticated, each within its own connect timeout), then the host.
    pub async fn connect_route(route: &Route) -> Result<SshSession, SessionError> {
        let hops = route.hops();
        let jumps = hops.len() - 1;
        let mut prev: Option<SshSession> = None;
        for (i, hop) in hops.iter().enumerate() {
            let attempt = match (prev.take(), &hop.via) {
                (Some(jump), _) => Self::connect_through(jump, &hop.opts).await,
                (None, Via::Command(cmd)) => Self::connect_command(&hop.opts, cmd).await,
                (None, _) => Self::connect(&hop.opts).await,
            };
            match attempt {
                Ok(s) => prev = Some(s),
                Err(e) if i < jumps => {
                    return Err(SessionError::Hop {
                        alias: hop.host.alias.clone(),
                        destination: hop.opts.destination(),
                        index: i + 1,
                        jumps,
                        target: route.host.alias.clone(),
                        source: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        prev.ok_or_else(|| SessionError::Exec {
            destination: route.opts.destination(),
            reason: "empty route".into(),
        })
    }

    /// The next hop over a `direct-tcpip` channel of `jump`.
    async fn connect_through(
        jump: SshSession,
        opts: &ConnectOptions,
    ) -> Result<SshSession, SessionError> {
        let destination = opts.destination();
        let attempt = async {
            let channel = jump
                .handle
                .channel_open_direct_tcpip(opts.host.clone(), u32::from(opts.port), "127.0.0.1", 0)
                .await
                .map_err(|source| SessionError::JumpChannel {
                    jump: jump.destination.clone(),
                    target: format!("{}:{}", opts.host, opts.port),
                    source,
                })?;
            Self::handshake(opts, channel.into_stream()).await
        };
        let mut session = match tokio::time::timeout(opts.connect_timeout, attempt).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(SessionError::ConnectTimeout {
                    destination,
                    timeout: opts.connect_timeout,
                })
            }
        };
        session.carrier = Some(Box::new(Carrier::Jump(jump)));
        Ok(session)
    }

    /// The host over the stdin/stdout of `sh -c COMMAND`.
    async fn connect_command(
        opts: &ConnectOptions,
        command: &str,
    ) -> Result<SshSession, SessionError> {
        let destination = opts.destination();
        let failed = |reason: String, source: Option<SessionError>| SessionError::ProxyCommand {
            command: command.to_string(),
            destination: destination.clone(),
            reason,
            source: source.map(Box::new),
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot start it: {e}"), None))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(failed("no pipes to it".into(), None));
        };
        // Keep the start of what the command says, for the error if it fails.
        let said = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&said);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    if s.len() < 4096 {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            }
        });
        let stream = tokio::io::join(stdout, stdin);
        let result =
            tokio::time::timeout(opts.connect_timeout, Self::handshake(opts, stream)).await;
        let err = match result {
            Ok(Ok(mut session)) => {
                session.carrier = Some(Box::new(Carrier::Command(child)));
                return Ok(session);
            }
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        };
        // Give an exiting command a moment, so its status and message are known.
        let status = tokio::time::timeout(std::time::Duration::from_millis(300), child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let text = said
            .lock()
            .map(|s| String::from_utf8_lossy(&s).trim().replace('\n', "; "))
            .unwrap_or_default();
        let mut reason = match (&status, &err) {
            (Some(st), _) => format!("it exited ({st}) before the SSH handshake completed"),
            (None, Some(_)) => "the SSH handshake over it failed".to_string(),
            (None, None) => format!(
                "no SSH handshake within {} s",
                opts.connect_timeout.as_secs()
            ),
        };
        if !text.is_empty() {
            reason.push_str(&format!(" (it said: {text})"));
        }
        Err(failed(reason, err))
    }
}

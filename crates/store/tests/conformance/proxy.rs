//! A TCP proxy for fault tests: between a client and PostgreSQL (or any TCP server) it can
//! freeze (stop forwarding, keep the sockets open: a network partition or a hung server), drop
//! every connection, delay traffic, and cut a connection at the `COMMIT` of a transaction.
//! Shared by the store's fault tests and the end-to-end tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// What the proxy does at the next `COMMIT` it sees from the client.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cut {
    /// Forward the `COMMIT`, then close the connection before the answer is forwarded.
    AnswerLost,
    /// Close the connection instead of forwarding the `COMMIT`.
    NeverSent,
    /// Freeze the whole proxy holding the `COMMIT` (it is forwarded on unfreeze).
    Frozen,
    /// Hold the `COMMIT` forever on that one connection (a half-dead socket); other
    /// connections keep working.
    Held,
}

#[derive(Default)]
struct ProxyState {
    frozen: AtomicBool,
    delay_ms: AtomicU64,
    cuts: Mutex<Vec<Cut>>,
    cuts_done: AtomicU64,
    conns: Mutex<Vec<Arc<Link>>>,
}

impl ProxyState {
    async fn wait_unfrozen(&self) {
        while self.frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    fn take_cut(&self) -> Option<Cut> {
        let mut c = self.cuts.lock().unwrap();
        if c.is_empty() {
            None
        } else {
            Some(c.remove(0))
        }
    }
}

/// One proxied connection: its two pump tasks and whether it was cut.
#[derive(Default)]
struct Link {
    cut: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Link {
    fn kill(&self) {
        for t in self.tasks.lock().unwrap().iter() {
            t.abort();
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: AbortHandle,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_all();
    }
}

impl Proxy {
    /// A proxy on 127.0.0.1 (a free port) forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let link = Arc::new(Link::default());
                    let up = tokio::spawn(pump(cr, sw, st.clone(), link.clone(), true));
                    let down = tokio::spawn(pump(sr, cw, st.clone(), link.clone(), false));
                    link.tasks
                        .lock()
                        .unwrap()
                        .extend([up.abort_handle(), down.abort_handle()]);
                    st.conns.lock().unwrap().push(link);
                });
            }
        })
        .abort_handle();
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Stops forwarding in both directions; sockets stay open, bytes read are held.
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::SeqCst);
    }
    pub fn unfreeze(&self) {
        self.state.frozen.store(false, Ordering::SeqCst);
    }
    /// Closes every connection (new ones are accepted).
    pub fn drop_all(&self) {
        for l in self.state.conns.lock().unwrap().drain(..) {
            l.kill();
        }
    }
    /// Delays every chunk forwarded by `ms`.
    pub fn delay(&self, ms: u64) {
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }
    /// Arms `cut` for the next `COMMIT` seen (several calls queue up).
    pub fn cut_at_commit(&self, cut: Cut) {
        self.state.cuts.lock().unwrap().push(cut);
    }
    /// How many armed cuts have happened.
    pub fn cuts_done(&self) -> u64 {
        self.state.cuts_done.load(Ordering::SeqCst)
    }
    pub fn disarm(&self) {
        self.state.cuts.lock().unwrap().clear();
    }
}

async fn pump(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    st: Arc<ProxyState>,
    link: Arc<Link>,
    to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        st.wait_unfrozen().await;
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        st.wait_unfrozen().await;
        let d = st.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
        if link.cut.load(Ordering::SeqCst) {
            // The answer to a cut COMMIT: never forwarded.
            return;
        }
        // tokio-postgres commits with the simple-protocol query "COMMIT".
        if to_server && has_commit(&buf[..n]) {
            if let Some(cut) = st.take_cut() {
                st.cuts_done.fetch_add(1, Ordering::SeqCst);
                match cut {
                    Cut::AnswerLost => {
                        link.cut.store(true, Ordering::SeqCst);
                        let _ = w.write_all(&buf[..n]).await;
                        let _ = w.flush().await;
                        // Let the server read and run the COMMIT, then close both sides.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        link.kill();
                        return;
                    }
                    Cut::NeverSent => {
                        link.cut.store(true, Ordering::SeqCst);
                        link.kill();
                        return;
                    }
                    Cut::Frozen => {
                        st.frozen.store(true, Ordering::SeqCst);
                        st.wait_unfrozen().await;
                    }
                    Cut::Held => std::future::pending::<()>().await,
                }
            }
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

fn has_commit(b: &[u8]) -> bool {
    b.windows(7).any(|w| w == b"COMMIT\0")
}

//! A small HTTP/1.1 server for the tests: serves a directory on 127.0.0.1, honours `Range`,
//! counts and logs requests, and injects faults (500s, truncated bodies, stalls, hangs,
//! dribbled and endless bodies, wrong `Content-Length`, a paused server that accepts nothing
//! like a SIGSTOPped one). It stops when dropped; every loop in it is bounded by that or by a
//! deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a server or a hung connection lives, even if a test forgets to drop it.
const LIFETIME: Duration = Duration::from_secs(300);
/// The longest a request head may be.
const MAX_HEAD: usize = 64 << 10;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The request target, e.g. `/hello.tar.gz`.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

#[derive(Debug, Default)]
struct Faults {
    fail: u32,
    truncate: u32,
    stall: u32,
    hang: u32,
    dribble: u32,
    /// Bytes per write and pause between writes of a dribbled body.
    dribble_pace: (usize, Duration),
    endless: u32,
    bomb: u32,
    misstate: u32,
    /// What a misstated `Content-Length` adds to the true length.
    misstate_by: i64,
}

/// The fault one request gets (at most one; checked in this order).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Hang,
    Fail,
    Truncate,
    Stall,
    Dribble(usize, Duration),
    Endless,
    Bomb,
    Misstate(i64),
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    stop: AtomicBool,
    log: Mutex<Vec<Logged>>,
    faults: Mutex<Faults>,
    /// Set by [`HttpServer::pause`]: nothing is accepted or answered until it is cleared.
    paused: AtomicBool,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves the files under `root` on an ephemeral port of 127.0.0.1.
    pub fn start(root: &Path) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            paused: AtomicBool::new(false),
            handlers: Mutex::new(Vec::new()),
        });
        let for_thread = shared.clone();
        let acceptor = std::thread::spawn(move || accept_loop(listener, for_thread));
        HttpServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` (relative to the served directory).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base(), path.trim_start_matches('/'))
    }

    /// How many requests arrived so far.
    pub fn requests(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// The requests so far, in order.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The next `n` requests get `500 Internal Server Error`.
    pub fn fail_next(&self, n: u32) {
        self.shared.faults.lock().unwrap().fail = n;
    }

    /// The next `n` responses announce the full length but send only half the body.
    pub fn truncate_next(&self, n: u32) {
        self.shared.faults.lock().unwrap().truncate = n;
    }

    /// The next `n` responses send half the body, then nothing more (until the server stops).
    pub fn stall_next(&self, n: u32) {
        self.shared.faults.lock().unwrap().stall = n;
    }

    /// The next `n` requests get no answer at all (until the server stops).
    pub fn hang_next(&self, n: u32) {
        self.shared.faults.lock().unwrap().hang = n;
    }

    /// The next `n` responses announce the full length, then send `bytes` bytes of the body
    /// every `every` (until the body is sent or the server stops).
    pub fn dribble_next(&self, n: u32, bytes: usize, every: Duration) {
        let mut faults = self.shared.faults.lock().unwrap();
        faults.dribble = n;
        faults.dribble_pace = (bytes.max(1), every);
    }

    /// The next `n` responses announce no length and send bytes as fast as the client takes
    /// them, without end (until the client goes away or the server stops).
    pub fn endless_next(&self, n: u32) {
        self.shared.faults.lock().unwrap().endless = n;
    }

    /// The next `n` responses are an endless valid zstd frame (no length, 128 KiB of output
    /// per 4 bytes of body): a decompression bomb without end.
    pub fn bomb_next(&self, n: u32) {
        self.shared.faults.lock().unwrap().bomb = n;
    }

    /// The next `n` responses announce a `Content-Length` of the true length plus `by`, then
    /// send the whole body; with `by > 0` the connection then stays open and silent (until the
    /// server stops), as a keep-alive server's would.
    pub fn misstate_length_next(&self, n: u32, by: i64) {
        let mut faults = self.shared.faults.lock().unwrap();
        faults.misstate = n;
        faults.misstate_by = by;
    }

    /// Clears every pending fault.
    pub fn clear_faults(&self) {
        *self.shared.faults.lock().unwrap() = Faults::default();
    }

    /// Stops accepting and answering, like a SIGSTOPped server: connections still complete
    /// (the kernel's listen backlog takes them) but get no answer until [`HttpServer::resume`].
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Undoes [`HttpServer::pause`]: queued connections are accepted and answered.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let handlers = std::mem::take(&mut *self.shared.handlers.lock().unwrap());
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let deadline = Instant::now() + LIFETIME;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if shared.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let for_thread = shared.clone();
                let handler = std::thread::spawn(move || handle(stream, &for_thread));
                shared.handlers.lock().unwrap().push(handler);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn handle(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/").to_string(),
    );
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
        .map(|(_, value)| value.trim().to_string());
    shared.log.lock().unwrap().push(Logged {
        path: path.clone(),
        range: range.clone(),
    });

    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let take = |n: &mut u32| {
            let hit = *n > 0;
            *n = n.saturating_sub(1);
            hit
        };
        if take(&mut faults.hang) {
            Some(Fault::Hang)
        } else if take(&mut faults.fail) {
            Some(Fault::Fail)
        } else if take(&mut faults.truncate) {
            Some(Fault::Truncate)
        } else if take(&mut faults.stall) {
            Some(Fault::Stall)
        } else if take(&mut faults.dribble) {
            Some(Fault::Dribble(faults.dribble_pace.0, faults.dribble_pace.1))
        } else if take(&mut faults.endless) {
            Some(Fault::Endless)
        } else if take(&mut faults.bomb) {
            Some(Fault::Bomb)
        } else if take(&mut faults.misstate) {
            Some(Fault::Misstate(faults.misstate_by))
        } else {
            None
        }
    };
    // A paused server answers nothing, not even requests that arrived before the pause.
    wait_while_paused(shared);
    match fault {
        Some(Fault::Hang) => {
            wait_for_stop(shared);
            return;
        }
        Some(Fault::Fail) => {
            respond(&mut stream, "500 Internal Server Error", &[], b"");
            return;
        }
        Some(Fault::Endless) => {
            send_endless(&mut stream, shared, b"", b"x");
            return;
        }
        Some(Fault::Bomb) => {
            send_endless(&mut stream, shared, &ZSTD_OPEN_FRAME, &ZSTD_RLE_BLOCK);
            return;
        }
        _ => {}
    }
    if method != "GET" {
        respond(&mut stream, "405 Method Not Allowed", &[], b"");
        return;
    }
    if let Some(rest) = path.strip_prefix("/redirect/") {
        respond(&mut stream, "302 Found", &[("Location", format!("/{rest}"))], b"");
        return;
    }
    let Some(file) = resolve(&shared.root, &path) else {
        respond(&mut stream, "404 Not Found", &[], b"not found\n");
        return;
    };
    let Ok(data) = std::fs::read(&file) else {
        respond(&mut stream, "404 Not Found", &[], b"not found\n");
        return;
    };
    let len = data.len();
    let etag = format!("\"{len}-{:x}\"", fnv(&data));
    let (status, body, mut headers) = match range.as_deref().and_then(parse_range) {
        Some((start, _)) if start >= len => {
            respond(
                &mut stream,
                "416 Range Not Satisfiable",
                &[("Content-Range", format!("bytes */{len}"))],
                b"",
            );
            return;
        }
        Some((start, end)) => {
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            (
                "206 Partial Content",
                &data[start..=end],
                vec![("Content-Range", format!("bytes {start}-{end}/{len}"))],
            )
        }
        None => ("200 OK", &data[..], Vec::new()),
    };
    headers.push(("ETag", etag));
    headers.push(("Accept-Ranges", "bytes".to_string()));
    match fault {
        Some(fault @ (Fault::Truncate | Fault::Stall)) => {
            // The announced length is the whole body; after half of it the connection closes
            // (truncate) or goes silent (stall).
            let head = response_head(status, &headers, body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            if fault == Fault::Stall {
                wait_for_stop(shared);
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Some(Fault::Dribble(bytes, every)) => {
            let head = response_head(status, &headers, body.len());
            let _ = stream.write_all(head.as_bytes());
            for piece in body.chunks(bytes) {
                if shared.stop.load(Ordering::SeqCst)
                    || stream.write_all(piece).and_then(|()| stream.flush()).is_err()
                {
                    return;
                }
                std::thread::sleep(every);
            }
        }
        Some(Fault::Misstate(by)) => {
            let announced = (body.len() as i64 + by).max(0) as usize;
            let head = response_head(status, &headers, announced);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            let _ = stream.flush();
            if by > 0 {
                wait_for_stop(shared);
            }
        }
        _ => respond(&mut stream, status, &headers, body),
    }
}

/// A zstd frame header without content size or checksum, window 128 KiB (RFC 8878 3.1.1.1).
const ZSTD_OPEN_FRAME: [u8; 6] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
/// One RLE block, not the last: 128 KiB of `x` (header: size << 3 | RLE << 1, little-endian).
const ZSTD_RLE_BLOCK: [u8; 4] = [0x02, 0x00, 0x10, b'x'];

/// Sends a `200` without a length, then `start`, then `unit` repeated without end, as fast as
/// the client reads, until it goes away or the server stops (bounded by the server's lifetime).
fn send_endless(stream: &mut TcpStream, shared: &Shared, start: &[u8], unit: &[u8]) {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    if stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(start))
        .is_err()
    {
        return;
    }
    let block = unit.repeat((64 << 10) / unit.len());
    let deadline = Instant::now() + LIFETIME;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if stream.write_all(&block).is_err() {
            return;
        }
    }
}

/// Sleeps while the server is paused (bounded by its stop and lifetime).
fn wait_while_paused(shared: &Shared) {
    let deadline = Instant::now() + LIFETIME;
    while shared.paused.load(Ordering::SeqCst)
        && !shared.stop.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sleeps until the server stops (bounded by its lifetime).
fn wait_for_stop(shared: &Shared) {
    let deadline = Instant::now() + LIFETIME;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn response_head(status: &str, headers: &[(&str, String)], len: usize) -> String {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let head = response_head(status, headers, body.len());
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// `bytes=START-` or `bytes=START-END`.
fn parse_range(value: &str) -> Option<(usize, Option<usize>)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start, end))
}

/// The file a request path names, if it stays inside `root`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next()?;
    let relative = Path::new(path.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn serves_ranges_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
    let server = HttpServer::start(dir.path());
    let get = |path: &str, range: Option<&str>| {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n{range}\r\n").unwrap();
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out);
        out
    };
    let full = get("/f", None);
    assert!(full.starts_with("HTTP/1.1 200 OK"), "{full}");
    assert!(full.ends_with("\r\n\r\n0123456789"), "{full}");
    let part = get("/f", Some("bytes=4-"));
    assert!(part.starts_with("HTTP/1.1 206"), "{part}");
    assert!(part.contains("Content-Range: bytes 4-9/10"), "{part}");
    assert!(part.ends_with("456789"), "{part}");
    assert!(get("/f", Some("bytes=10-")).starts_with("HTTP/1.1 416"));
    assert!(get("/missing", None).starts_with("HTTP/1.1 404"));
    assert!(get("/../f", None).starts_with("HTTP/1.1 404"));
    server.fail_next(1);
    assert!(get("/f", None).starts_with("HTTP/1.1 500"));
    server.truncate_next(1);
    let truncated = get("/f", None);
    assert!(
        truncated.contains("Content-Length: 10") && truncated.ends_with("\r\n\r\n01234"),
        "{truncated}"
    );
    assert_eq!(server.requests(), 7);
    assert_eq!(server.log()[1].range.as_deref(), Some("bytes=4-"));
    server.hang_next(1);
    let mut hung = TcpStream::connect(server.addr).unwrap();
    write!(hung, "GET /f HTTP/1.1\r\n\r\n").unwrap();
    // Dropping the server ends the hung handler too.
    drop(server);
    let mut rest = Vec::new();
    let _ = hung.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn dribbles_misstates_pauses_and_sends_endless_bodies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
    let server = HttpServer::start(dir.path());
    let send = |path: &str| {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        stream
    };
    let get = |path: &str| {
        let mut out = String::new();
        let _ = send(path).read_to_string(&mut out);
        out
    };
    server.dribble_next(1, 3, Duration::from_millis(50));
    let started = Instant::now();
    let dribbled = get("/f");
    assert!(dribbled.ends_with("\r\n\r\n0123456789"), "{dribbled}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    server.misstate_length_next(1, -4);
    let short = get("/f");
    assert!(
        short.contains("Content-Length: 6\r\n") && short.ends_with("0123456789"),
        "{short}"
    );
    server.endless_next(1);
    let mut endless = send("/f");
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < buf.len() {
        got += endless.read(&mut buf[got..]).unwrap();
    }
    assert!(buf.ends_with(b"xxxx"));
    drop(endless);
    server.pause();
    let mut paused = send("/f");
    paused.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(paused.read(&mut buf).is_err(), "a paused server answered");
    server.resume();
    paused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = paused.read_to_end(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("0123456789"));
}

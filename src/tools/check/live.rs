//! `jam check --watch`: the live class board. Every interval it checks every server again (the
//! same bounded run as a one-off `jam check`, and never two rounds at once), keeps the last few
//! results of each server, and serves the board page and its document over read-only HTTP; the
//! page polls the document and draws again when a round is done. The targets file is read again
//! when it changes, so students who join late appear.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::grade::Points;
use super::model::{CheckConfig, TargetSpec};
use super::page::{self, Meta};
use super::report::Run;
use super::{TargetReport, run_all, server_run};
use crate::client::ClientError;
use crate::http::{self, Page, Site};

/// The pause between the end of one round and the start of the next, at least: the servers get
/// a rest even when a round takes longer than the interval.
const MIN_PAUSE: Duration = Duration::from_secs(1);

/// What the board watches and how.
#[derive(Debug, Clone)]
pub struct Watch {
    /// From the start of one round to the start of the next.
    pub interval: Duration,
    /// Results kept per server (the history strip).
    pub history: usize,
    /// Servers from the command line.
    pub targets: Vec<TargetSpec>,
    /// Servers from a file, read again when it changes.
    pub targets_file: Option<PathBuf>,
    /// The command line, for the page's header.
    pub command: String,
}

/// One past result of a server, for its history strip.
#[derive(Debug, Clone)]
struct Mark {
    passed: bool,
    at: String,
    must: String,
}

/// What the board remembers of one server between rounds.
#[derive(Debug)]
struct Track {
    passed: bool,
    since: Instant,
    marks: VecDeque<Mark>,
}

/// The board's current document and page, made once per change and served as they are.
#[derive(Default)]
struct Published {
    json: Bytes,
    page: Bytes,
}

/// The served board.
struct Board {
    published: Mutex<Published>,
}

impl Board {
    fn publish(&self, doc: &Value) {
        let published = Published {
            json: Bytes::from(doc.to_string()),
            page: Bytes::from(page::html(doc)),
        };
        if let Ok(mut slot) = self.published.lock() {
            *slot = published;
        }
    }

    fn page(&self, path: &str) -> Option<Page> {
        let slot = self.published.lock().ok()?;
        match path {
            "/" | "/index.html" => Some(Page::new("text/html; charset=utf-8", slot.page.clone())),
            "/board.json" => Some(Page::new("application/json", slot.json.clone())),
            _ => None,
        }
    }
}

/// Binds the board's address (nothing is served until [`run`] publishes the first page).
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), ClientError> {
    let addrs = crate::listener::resolve_listen(addr)
        .map_err(|e| ClientError::Usage(format!("--serve: {e}")))?;
    let mut last = None;
    for a in addrs {
        match TcpListener::bind(a).await {
            Ok(listener) => {
                let local = listener.local_addr().unwrap_or(a);
                return Ok((listener, local));
            }
            Err(e) => last = Some(format!("cannot serve the board on {a}: {e}")),
        }
    }
    Err(ClientError::Usage(last.unwrap_or_else(|| {
        format!("--serve {addr} names no address")
    })))
}

/// The servers to check this round: the command line's, then the file's. A file that cannot be
/// read or parsed keeps the last good list (and says so once per change).
struct Targets {
    file: Option<PathBuf>,
    stamp: Option<(SystemTime, u64)>,
    from_file: Vec<TargetSpec>,
    fixed: Vec<TargetSpec>,
}

impl Targets {
    fn current(&mut self, say: &mut dyn FnMut(String)) -> Vec<TargetSpec> {
        if let Some(path) = &self.file {
            let stamp = std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            if stamp != self.stamp {
                let first = self.stamp.is_none();
                self.stamp = stamp;
                let read = std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| TargetSpec::parse_list(&text).map_err(|e| e.to_string()));
                match read {
                    Ok(list) => {
                        if !first {
                            say(format!(
                                "{} changed: {} servers (was {})",
                                path.display(),
                                list.len(),
                                self.from_file.len()
                            ));
                        }
                        self.from_file = list;
                    }
                    Err(e) => say(format!(
                        "warning: keeping the last list of servers: {}: {e}",
                        path.display()
                    )),
                }
            }
        }
        let mut all = self.fixed.clone();
        all.extend(self.from_file.iter().cloned());
        all
    }
}

/// The key a server's history is kept under.
fn key(spec: &TargetSpec) -> (String, Option<String>) {
    (spec.target.clone(), spec.name.clone())
}

/// Checks every server every interval and serves the board on `listener` until `stop`; calls
/// `on_round` with each finished round (to print it and write the report files). Returns the
/// last finished round's reports.
pub async fn run(
    watch: Watch,
    config: &CheckConfig,
    points: &Points,
    listener: TcpListener,
    stop: CancellationToken,
    on_round: &mut dyn FnMut(&Run<'_, super::Case>, &Value, Duration),
    say: &mut dyn FnMut(String),
) -> Vec<TargetReport> {
    let board = Arc::new(Board {
        published: Mutex::new(Published::default()),
    });
    let mut targets = Targets {
        file: watch.targets_file.clone(),
        stamp: None,
        from_file: Vec::new(),
        fixed: watch.targets.clone(),
    };
    let mut tracks: HashMap<(String, Option<String>), Track> = HashMap::new();
    let mut last: Vec<TargetReport> = Vec::new();
    let meta = |generated_at: String| Meta {
        generated_at,
        command: watch.command.clone(),
    };
    let history = watch.history.max(1);
    let mut round = 0u64;
    // The first page says a round is on its way, before any result.
    let empty = server_run(&[], config.strict, points);
    let mut doc = page::document(&empty, &meta(page::now_text()));
    doc["board"]["live"] = live_json(&watch, round, true);
    board.publish(&doc);
    let site = {
        let board = board.clone();
        Site {
            page: Box::new(move |path| board.page(path)),
            not_found: "not found; the board is at /\n",
            read_only: "the board is read-only: GET / or /board.json\n",
            no_store: true,
            name: "board",
        }
    };
    tokio::spawn(http::serve(listener, Arc::new(site), stop.clone()));

    loop {
        let started = Instant::now();
        let specs = targets.current(say);
        doc["board"]["live"] = live_json(&watch, round, true);
        board.publish(&doc);
        let reports = tokio::select! {
            () = stop.cancelled() => break,
            reports = run_all(specs.clone(), config) => reports,
        };
        round += 1;
        let now = Instant::now();
        let at = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
        tracks.retain(|k, _| specs.iter().any(|s| &key(s) == k));
        for r in &reports {
            let passed = r.passed();
            let track = tracks.entry(key(&r.spec)).or_insert_with(|| Track {
                passed,
                since: now,
                marks: VecDeque::new(),
            });
            if track.passed != passed {
                track.passed = passed;
                track.since = now;
            }
            let must = r.tally(super::Level::Must);
            track.marks.push_back(Mark {
                passed,
                at: at.clone(),
                must: format!("{}/{}", must.passed, must.total),
            });
            while track.marks.len() > history {
                track.marks.pop_front();
            }
        }
        let run = server_run(&reports, config.strict, points);
        doc = page::document(&run, &meta(page::now_text()));
        doc["board"]["live"] = live_json(&watch, round, false);
        if let Some(targets) = doc["targets"].as_array_mut() {
            for (entry, r) in targets.iter_mut().zip(&reports) {
                if let Some(track) = tracks.get(&key(&r.spec)) {
                    entry["since_s"] = json!(now.duration_since(track.since).as_secs());
                    entry["history"] = track
                        .marks
                        .iter()
                        .map(|m| json!({"passed": m.passed, "at": m.at, "must": m.must}))
                        .collect();
                }
            }
        }
        board.publish(&doc);
        on_round(&run, &doc, started.elapsed());
        last = reports;
        let next = (started + watch.interval).max(Instant::now() + MIN_PAUSE);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
    stop.cancel();
    last
}

fn live_json(watch: &Watch, round: u64, checking: bool) -> Value {
    json!({
        "interval_s": watch.interval.as_secs_f64(),
        "round": round,
        "checking": checking,
        "history": watch.history,
    })
}

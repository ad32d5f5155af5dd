//! `jam`: the client. Ask the time, talk to the server, check its clock, load-test it.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use signal_hook::consts::SIGINT;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use jam::bench::{self, BenchConfig, BenchReport, Expect, Mode, Progress};
use jam::client::{self, Client, ClientError, DEFAULT_TARGET, Target};
use jam::config::parse_duration;
use jam::generate::{self, Generate};
use jam::reply::{LineEnd, Reply, TimeReply};
use serde_json::json;

/// Prints a line to stdout. If stdout is gone (`jam bench | head`), stop quietly instead of
/// panicking, with [`STDOUT_GONE`]'s exit code: 0 where the reader has what it wanted, but not
/// for `jam check`, whose verdict would be lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        if writeln!(out, $($arg)*).and_then(|()| out.flush()).is_err() {
            std::process::exit(STDOUT_GONE.load(std::sync::atomic::Ordering::Relaxed));
        }
    }};
}

/// The exit code when stdout cannot be written (see [`say!`]).
static STDOUT_GONE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  2  bad command line or address
  3  connection refused
  4  host name did not resolve
  5  timed out
  6  the server's reply is not a jam reply
  7  the server answered with an error line (ERR ...)
  8  other network error (reset, closed early)
  1  jam bench saw errors";

/// The man page's sections that the flags do not hold.
const MAN_SECTIONS: &[generate::Section] = &[
    generate::Section {
        title: "EXAMPLES",
        paragraphs: &[
            "  jam\n  jam time time.lab 45000 -n 3\n  jam shell [::1]:45000\n  jam offset \
             10.0.0.5\n  jam check 127.0.0.1:45000\n  jam check --summary --targets-file \
             class.txt --junit report.xml\n  jam check --targets-file class.txt --html lab.html \
             --csv lab.csv --points must=2,should=1\n  jam check --targets-file class.txt --watch \
             30s\n  jam bench 127.0.0.1:45000 -c 50 -P 16 -z 10s",
        ],
    },
    generate::Section {
        title: "SEE ALSO",
        paragraphs: &["jamd(1), nc(1), telnet(1)"],
    },
];

/// jam: ask a jam time server the time, talk to it, check its clock, load-test it.
#[derive(Debug, Parser)]
#[command(
    name = "jam",
    version,
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    color: ColorChoice,

    /// Print the man page or a shell completion script to stdout and exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    generate: Option<Generate>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the server for the time (the default): prints `JAM hh:mm:ss`.
    Time(TimeArgs),
    /// Interactive session with line editing and history.
    Shell(ShellArgs),
    /// Estimate the server clock's offset from the local clock, to well under a second.
    Offset(OffsetArgs),
    /// Load-test a server (jamd, or any line protocol with --request/--expect).
    Bench(Box<BenchArgs>),
    /// Grade one or more time servers against the assignment, case by case.
    #[command(after_help = check_help())]
    Check(CheckArgs),
    /// Grade a time client (the assignment's other half): jam plays the server, runs the client
    /// once per scenario and judges what it sent, printed and did.
    #[command(name = "check-client", after_help = check_client_help())]
    CheckClient(CheckClientArgs),
}

#[derive(Debug, Args)]
struct CheckClientArgs {
    /// Where the server the client dials listens (repeatable) [default: 127.0.0.1:45000 and
    /// [::1]:45000]. `{port}` in the command is replaced by the first one's port, which is also in
    /// JAM_CHECK_PORT.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,

    /// Longest one run of the client may take before it is killed (a slow-reply run gets 1.5 s
    /// more).
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = positive_duration)]
    runs_timeout: Duration,

    /// Should-level cases must pass too (exit 1 otherwise).
    #[arg(long)]
    strict: bool,

    /// Print every case's detail and transcript.
    #[arg(short, long)]
    verbose: bool,

    /// Print one JSON document (and nothing else) to stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    files: ReportFiles,

    /// The client to check, and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `jam check-client --help`'s list of cases.
fn check_client_help() -> String {
    let mut text = jam::check::case_list(&jam::check::client::CLIENT_CATALOGUE);
    text.push_str(
        "\nExit codes: 0 every must case passed (with --strict, every should case too); 1 a \
         case failed; 2 bad command line, the client cannot be started, or the port is in use.",
    );
    text
}

fn check_client_command(runtime: &tokio::runtime::Runtime, args: CheckClientArgs) -> ExitCode {
    use jam::check::{client, report};
    let mut config = client::ClientCheckConfig::new();
    if !args.listen.is_empty() {
        let mut listen = Vec::new();
        for spec in &args.listen {
            let parsed = match jam::address::parse(spec, jam::address::Use::Listen) {
                Ok(parsed) => parsed,
                Err(e) => {
                    eprintln!("jam check-client: {e}");
                    return ExitCode::from(2);
                }
            };
            let ip: std::net::IpAddr = if parsed.host.is_empty() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                match parsed.host.parse() {
                    Ok(ip) => ip,
                    Err(_) => {
                        eprintln!(
                            "jam check-client: --listen {spec}: give an IP address (127.0.0.1:PORT)"
                        );
                        return ExitCode::from(2);
                    }
                }
            };
            listen.push(std::net::SocketAddr::new(
                ip,
                parsed.port.unwrap_or_default(),
            ));
        }
        config.listen = listen;
    }
    config.run_timeout = args.runs_timeout;
    config.strict = args.strict;
    STDOUT_GONE.store(1, std::sync::atomic::Ordering::Relaxed);
    // Try every report file before the run, so a wrong path is said at once.
    let outputs = match Outputs::new(&args.files) {
        Ok(outputs) => outputs,
        Err(e) => {
            eprintln!("jam check-client: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let report = match runtime.block_on(client::check_client(&args.command, &config)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("jam check-client: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let reports = [report];
    let points = jam::check::grade::Points::default();
    let run = report::Run {
        tool: "jam check-client",
        catalogue: &client::CLIENT_CATALOGUE,
        reports: &reports,
        strict: args.strict,
        points: &points,
    };
    let written = outputs.write(&run, None);
    if args.json {
        say!("{}", report::json(&run));
    } else {
        let style = report::Style::new(colored(std::io::stdout().is_terminal()));
        say!(
            "{}",
            report::text("jam check-client", &reports[0], args.verbose, style)
        );
        say!("checked in {}", report::took(reports[0].elapsed));
    }
    if let Err(e) = written {
        eprintln!("jam check-client: {e}");
        return ExitCode::from(1);
    }
    ExitCode::from(jam::check::exit_code(&reports))
}

/// The report files both graders can write besides their output.
#[derive(Debug, Args)]
struct ReportFiles {
    /// Also write JUnit XML to FILE (for CI systems and autograders).
    #[arg(long, value_name = "FILE")]
    junit: Option<std::path::PathBuf>,

    /// Also write the class board to FILE: one self-contained HTML page (a row per server, a
    /// column per case; press a cell for its detail and transcript).
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,

    /// Also write one CSV row per server to FILE (every case's status, must and should passed,
    /// score, run time).
    #[arg(long, value_name = "FILE")]
    csv: Option<std::path::PathBuf>,

    /// Also write Gradescope's autograder results.json to FILE (a test per case).
    #[arg(long, value_name = "FILE")]
    gradescope: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Servers to check: HOST[:PORT] (port 45000 if left out).
    #[arg(value_name = "HOST[:PORT]")]
    targets: Vec<String>,

    /// Read more servers from FILE: one `HOST:PORT [NAME]` per line, `#` comments.
    #[arg(long, value_name = "FILE")]
    targets_file: Option<std::path::PathBuf>,

    /// Should-level cases must pass too (exit 1 otherwise).
    #[arg(long)]
    strict: bool,

    /// Run only these cases (comma-separated ids).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    only: Vec<String>,

    /// Leave out these cases (comma-separated ids).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    skip: Vec<String>,

    /// Longest wait for a reply, a close or a connection (more than 0, at most 1h).
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = timeout_duration)]
    timeout: Duration,

    /// Largest clock difference time-correct accepts, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    max_offset: f64,

    /// Clients of many-clients (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    clients: u16,

    /// Servers checked at once.
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,

    /// Print every case's detail and transcript.
    #[arg(short, long, conflicts_with = "summary")]
    verbose: bool,

    /// Print only the table with one row per server (for a class), not each server's cases.
    #[arg(long)]
    summary: bool,

    /// Print one JSON document (and nothing else) to stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    files: ReportFiles,

    /// Points per passed case for the score: `must=N,should=M[,info=K][,CASE-ID=P]`, or a file of
    /// such lines. Default must=1,should=1,info=0.
    #[arg(long, value_name = "POINTS|FILE")]
    points: Option<String>,

    /// Keep checking every DURATION and serve a live board (see --serve); Ctrl-C ends it.
    #[arg(long, value_name = "DURATION", value_parser = watch_interval, conflicts_with = "json")]
    watch: Option<Duration>,

    /// Where the live board listens (with --watch). Loopback unless you name another address.
    #[arg(
        long,
        value_name = "ADDR",
        requires = "watch",
        default_value = "127.0.0.1:8045"
    )]
    serve: String,

    /// Results kept per server for the live board's history strip (1 to 100).
    #[arg(long, value_name = "N", default_value_t = 20, requires = "watch", value_parser = clap::value_parser!(u16).range(1..=100))]
    history: u16,
}

/// `--watch`: from 2 s to 1 h.
fn watch_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(2) || interval > Duration::from_secs(3600) {
        return Err("the interval must be from 2s to 1h".into());
    }
    Ok(interval)
}

/// `jam check --help`'s list of cases, from the catalogue itself.
fn check_help() -> String {
    let mut text = jam::check::cases_help();
    text.push_str(
        "\nExit codes: 0 every must case passed on every server (with --strict, every should case \
         too); 1 a case failed or timed out, or a server could not be checked; 2 bad command \
         line; with one server that cannot be reached: 3 refused, 4 no such host, 5 timed out, \
         8 another network error (e.g. network unreachable). connect always runs.",
    );
    text
}

#[derive(Debug, Args)]
struct Common {
    /// Server address: HOST[:PORT], IPv6 in brackets ([::1]:45000) [default: 127.0.0.1:45000].
    #[arg(
        value_name = "HOST[:PORT]",
        default_value = "127.0.0.1",
        hide_default_value = true
    )]
    target: String,

    /// The port, as nc takes it: `jam time HOST PORT` is `jam time HOST:PORT`.
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port_word: Option<u16>,

    /// The port, when HOST is given without one.
    #[arg(short, long, value_name = "PORT", conflicts_with = "port_word", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,

    /// Give up on connecting or on a reply after this long (more than 0, at most 1h).
    #[arg(short, long, value_name = "DURATION", default_value = "5s", value_parser = timeout_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct TimeArgs {
    #[command(flatten)]
    common: Common,

    /// Ask this many times on one connection (at least 1).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,

    /// Pause between requests with --count.
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    interval: Duration,

    /// Print one JSON object per reply.
    #[arg(long)]
    json: bool,

    /// Accept only the exact `JAM hh:mm:ss` CR LF reply: a variant (a date, no `JAM `, LF only)
    /// exits 6 instead of being printed with a note.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
struct ShellArgs {
    #[command(flatten)]
    common: Common,

    /// Keep no history (~/.jam_history). Input that is not a terminal is never recorded.
    #[arg(long)]
    no_history: bool,
}

#[derive(Debug, Args)]
struct OffsetArgs {
    #[command(flatten)]
    common: Common,

    /// Bisection rounds after the first second boundary is found (each waits up to 1 s).
    #[arg(short, long, value_name = "N", default_value_t = 6)]
    rounds: usize,

    /// Print the estimate as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Server address: HOST[:PORT].
    #[arg(value_name = "HOST[:PORT]", default_value = DEFAULT_TARGET)]
    target: String,

    /// Concurrent connections (workers with --connect-per-request), at least 1.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 50, value_parser = at_least_one)]
    connections: usize,

    /// Requests in flight per connection, at least 1.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    pipeline: usize,

    /// Total requests, at least 1 [default: 100000 unless --duration is given].
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Run for this long (more than 0) instead of a number of requests.
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = positive_duration, conflicts_with = "requests")]
    duration: Option<Duration>,

    /// Open loop: send this many requests per second in total, whatever the replies do, and
    /// measure latency from each request's intended send time.
    #[arg(
        long,
        value_name = "PER_SECOND",
        conflicts_with = "connect_per_request"
    )]
    rate: Option<f64>,

    /// Open a new connection for every request: connect, request, reply, quit.
    #[arg(long)]
    connect_per_request: bool,

    /// The request line (without CR LF).
    #[arg(long, value_name = "LINE", default_value = "TIME")]
    request: String,

    /// A good reply starts with this; without it, replies must be time replies (`JAM hh:mm:ss`,
    /// or a variant such as a date before the time, counted as not exact).
    #[arg(long, value_name = "PREFIX")]
    expect: Option<String>,

    /// Count only the exact `JAM hh:mm:ss` CR LF as a good reply (what benchmarks use).
    #[arg(long, conflicts_with = "expect")]
    strict: bool,

    /// Line sent before closing with --connect-per-request ("" to just close).
    #[arg(long, value_name = "LINE", default_value = "QUIT")]
    quit: String,

    /// Load threads, at least 1 [default: one per CPU this process may run on].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    threads: Option<usize>,

    /// Connect from this many loopback addresses 127.0.0.1..N, so that many connections do
    /// not run out of ephemeral ports [default: 16 for a loopback target with
    /// --connect-per-request or more than 1000 connections, else 1].
    #[arg(long, value_name = "N")]
    sources: Option<u8>,

    /// Give up on a connection or a reply after this long (more than 0, at most 1h).
    #[arg(short, long, value_name = "DURATION", default_value = "5s", value_parser = timeout_duration)]
    timeout: Duration,

    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// When to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set (no-color.org).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The run's `--color`, set once in `main`.
static COLOR: std::sync::OnceLock<ColorChoice> = std::sync::OnceLock::new();

/// Whether to colour output going to a stream that `is_terminal` or not.
fn colored(is_terminal: bool) -> bool {
    match COLOR.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = COLOR.set(cli.color);
    if let Some(what) = cli.generate {
        return match generate::write(
            what,
            Cli::command(),
            MAN_SECTIONS,
            &mut std::io::stdout().lock(),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jam: cannot write to stdout: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jam: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or_else(|| {
        Command::Time(TimeArgs {
            common: Common {
                target: DEFAULT_TARGET.to_string(),
                port_word: None,
                port: None,
                timeout: Duration::from_secs(5),
            },
            count: 1,
            interval: Duration::from_secs(1),
            json: false,
            strict: false,
        })
    });
    let result = match command {
        Command::Time(args) => runtime.block_on(time(args)),
        Command::Shell(args) => shell(&runtime, args),
        Command::Offset(args) => runtime.block_on(offset(args)),
        Command::Bench(args) => return bench_command(&runtime, *args),
        Command::CheckClient(args) => return check_client_command(&runtime, args),
        Command::Check(args) => {
            let code = check_command(&runtime, args);
            // A host-name lookup that timed out still runs on a blocking thread: do not wait
            // for it (the verdict is already out).
            runtime.shutdown_background();
            return code;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jam: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

impl Common {
    /// The target, with the port given apart (`HOST PORT` or `-p PORT`) if there is one.
    fn target(&self) -> Result<Target, ClientError> {
        let target = Target::parse(&self.target)?;
        match self.port_word.or(self.port) {
            None => Ok(target),
            Some(_) if Target::names_port(&self.target) => Err(ClientError::Usage(format!(
                "two ports: {:?} already names one; give HOST:PORT or HOST PORT",
                self.target
            ))),
            Some(port) => Ok(Target { port, ..target }),
        }
    }
}

async fn connect(common: &Common) -> Result<Client, ClientError> {
    Client::connect(&common.target()?, common.timeout).await
}

async fn time(args: TimeArgs) -> Result<(), ClientError> {
    let mut client = connect(&args.common).await?;
    let mut noted = false;
    for i in 0..args.count {
        if i > 0 {
            tokio::time::sleep(args.interval).await;
        }
        let sample = client.time().await?;
        let reply = sample.reply;
        if args.strict && !reply.is_exact() {
            return Err(ClientError::NotExact {
                reply: sample.text,
                differences: reply.describe_differences(),
            });
        }
        let text = String::from_utf8_lossy(&sample.time.hh_mm_ss()).into_owned();
        if args.json {
            let line = json!({
                "server": client.peer().to_string(),
                "reply": sample.text,
                "time": text,
                "exact": reply.is_exact(),
                "differences": reply.differences().iter().map(ToString::to_string).collect::<Vec<_>>(),
                // Microseconds are the clock's resolution here: 0.951, not 0.9507610000000001.
                "rtt_ms": (sample.rtt().as_secs_f64() * 1e6).round() / 1e3,
            });
            say!("{line}");
        } else {
            say!("{}", sample.text);
        }
        note_variant(&reply, &mut noted);
    }
    let end = client.quit().await?;
    note_left_open(end);
    Ok(())
}

/// Says on stderr that the server did not close the connection after QUIT.
fn note_left_open(end: client::QuitEnd) {
    if end == client::QuitEnd::LeftOpen {
        eprintln!(
            "jam: note: the server did not close the connection within {} ms of QUIT (QUIT \
             should end the session); jam closed it",
            client::QUIT_GRACE.as_millis()
        );
    }
}

/// Says on stderr, once per run, how a variant reply differs from the exact form.
fn note_variant(reply: &TimeReply, noted: &mut bool) {
    if !reply.is_exact() && !*noted {
        *noted = true;
        eprintln!(
            "jam: note: not the exact reply JAM hh:mm:ss CR LF: {}",
            reply.describe_differences()
        );
    }
}

async fn offset(args: OffsetArgs) -> Result<(), ClientError> {
    let mut client = connect(&args.common).await?;
    let peer = client.peer();
    // A few seconds of measuring: on a terminal, say so (indicatif draws nothing elsewhere).
    let progress = indicatif::ProgressBar::new_spinner().with_message(format!(
        "measuring the clock offset of {peer} (a few seconds)"
    ));
    progress.enable_steady_tick(Duration::from_millis(120));
    let estimate = client::estimate_offset(&mut client, args.rounds).await;
    progress.finish_and_clear();
    let estimate = estimate?;
    note_left_open(client.quit().await?);
    note_variant(&estimate.reply, &mut false);
    let zone = estimate.zone_offset;
    let zone_text = format!(
        "UTC{}{:02}:{:02}",
        if zone < 0 { '-' } else { '+' },
        zone.abs() / 3600,
        zone.abs() % 3600 / 60
    );
    if args.json {
        let line = json!({
            "server": peer.to_string(),
            "offset_s": estimate.offset,
            "uncertainty_s": estimate.uncertainty,
            "zone_offset_s": zone,
            "min_rtt_s": estimate.min_rtt,
            "samples": estimate.samples,
            "exact": estimate.reply.is_exact(),
        });
        say!("{line}");
    } else {
        say!("server  {peer} (reports local time in {zone_text})");
        say!(
            "offset  {:+.4} s ± {:.4} s  (server clock minus local clock)",
            estimate.offset,
            estimate.uncertainty
        );
        say!(
            "rtt     {:.3} ms (smallest of {} requests)",
            estimate.min_rtt * 1e3,
            estimate.samples
        );
    }
    Ok(())
}

fn shell(runtime: &tokio::runtime::Runtime, args: ShellArgs) -> Result<(), ClientError> {
    let mut client = runtime.block_on(connect(&args.common))?;
    let color = colored(std::io::stdout().is_terminal());
    let (red, reset) = if color {
        ("\x1b[31m", "\x1b[0m")
    } else {
        ("", "")
    };
    say!(
        "connected to {}; type {} (Ctrl-D quits)",
        client.peer(),
        jam::protocol::command_names()
    );
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            return Err(ClientError::Io {
                context: "cannot start the line editor".into(),
                source: std::io::Error::other(e.to_string()),
            });
        }
    };
    // Piped input is a script, not something typed: it is not recorded.
    let history = if args.no_history || !std::io::stdin().is_terminal() {
        None
    } else {
        std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".jam_history"))
    };
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let mut noted = false;
    let mut show = |line: &[u8]| match Reply::parse(line) {
        Reply::Time(reply) => {
            say!("{}", String::from_utf8_lossy(LineEnd::split(line).0));
            note_variant(&reply, &mut noted);
        }
        Reply::Error(message) => say!("{red}error: {message}{reset}"),
        Reply::Invalid(bytes) => say!(
            "{red}unexpected reply: \"{}\"{reset}",
            client::escaped(bytes)
        ),
    };
    let result = loop {
        let line = match editor.readline("jam> ") {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => {
                let _ = runtime.block_on(client.send("QUIT"));
                break Ok(());
            }
        };
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(command);
        // Lines the server sent on its own (an idle timeout) come first, marked as such: they
        // are not the answer to this command.
        let mut closed = false;
        while let Ok(pending) = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(1), client.read_line()).await
        }) {
            match pending {
                Ok(Some(l)) => {
                    say!("(unasked, from the server)");
                    show(&l);
                }
                _ => {
                    closed = true;
                    break;
                }
            }
        }
        if closed && command.eq_ignore_ascii_case("QUIT") {
            say!("the server had closed the connection; bye");
            break Ok(());
        }
        if closed {
            say!("the server closed the connection; reconnecting");
            client = match runtime.block_on(connect(&args.common)) {
                Ok(client) => client,
                Err(e) => break Err(e),
            };
        }
        if command.eq_ignore_ascii_case("QUIT") {
            let end = runtime.block_on(client.quit())?;
            say!("bye");
            note_left_open(end);
            break Ok(());
        }
        runtime.block_on(client.send(command))?;
        match runtime.block_on(client.read_line()) {
            Ok(Some(reply)) => show(&reply),
            Ok(None) => {
                say!("the server closed the connection; the next command reconnects");
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    result
}

fn bench_command(runtime: &tokio::runtime::Runtime, args: BenchArgs) -> ExitCode {
    match run_bench(runtime, &args) {
        Ok(report) => {
            if report.interrupted {
                ExitCode::from(130)
            } else if report.error_count() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("jam bench: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A count of at least 1 (`-c 0` would silently mean 1 otherwise).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A timeout: more than 0, at most an hour (a typo of hours would otherwise overflow deadlines).
fn timeout_duration(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d > Duration::from_secs(3600) => Err("must be at most 1h".into()),
        d => Ok(d),
    }
}

/// A duration of more than 0.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn run_bench(
    runtime: &tokio::runtime::Runtime,
    args: &BenchArgs,
) -> Result<BenchReport, ClientError> {
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(ClientError::Usage(format!(
            "--rate {rate}: must be a number of requests per second above 0"
        )));
    }
    let target = Target::parse(&args.target)?;
    let addr = runtime.block_on(target.resolve())?[0];
    // One connection first: with nothing listening, say so in one line (exit 3, as every other
    // command does) rather than print a summary of zeros.
    drop(runtime.block_on(Client::connect_addr(addr, args.timeout))?);
    let expect = match (&args.expect, args.request.as_str()) {
        (Some(prefix), _) => Expect::Prefix(prefix.as_bytes().to_vec()),
        (None, request) if request.eq_ignore_ascii_case("TIME") => Expect::JamTime {
            strict: args.strict,
        },
        (None, _) => {
            return Err(ClientError::Usage(
                "--request needs --expect (what a good reply starts with), e.g. --request PING --expect +PONG".into(),
            ));
        }
    };
    let mode = match (args.rate, args.connect_per_request) {
        (Some(rate), _) => Mode::OpenLoop(rate),
        (None, true) => Mode::ConnectPerRequest,
        (None, false) => Mode::ClosedLoop,
    };
    let mut connections = args.connections;
    // Raise our own descriptor limit as far as allowed, and say so if -c still does not fit.
    if let Ok(limit) = jam::config::raise_open_file_limit() {
        let usable = usize::try_from(limit.saturating_sub(32)).unwrap_or(usize::MAX);
        if mode != Mode::ConnectPerRequest && connections > usable {
            eprintln!(
                "jam bench: the open-file limit ({limit}) allows only {usable} connections; using -c {usable}"
            );
            connections = usable;
        }
    }
    let many = mode == Mode::ConnectPerRequest || connections > 1000;
    let sources = match args.sources {
        Some(n) if n > 1 => bench::loopback_sources(addr, n),
        Some(_) => Vec::new(),
        None if many => bench::loopback_sources(addr, 16),
        None => Vec::new(),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let requests = match (args.requests, args.duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(100_000),
    };
    let config = BenchConfig {
        target: addr,
        connections,
        pipeline: args.pipeline,
        requests,
        duration: args.duration,
        mode,
        request: args.request.as_bytes().to_vec(),
        quit: args.quit.as_bytes().to_vec(),
        expect,
        threads,
        timeout: args.timeout,
        sources,
    };
    let progress = Arc::new(Progress::default());
    // Ctrl-C ends the run with a summary of what was done; a second Ctrl-C exits at once.
    let interrupt = progress.interrupt.clone();
    let _ = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, interrupt.clone());
    let _ = signal_hook::flag::register(SIGINT, interrupt.clone());
    let bar = progress_bar(&config, progress.clone());
    let report = bench::run(&config, progress);
    if let Some((bar, stop)) = bar {
        stop.store(true, Ordering::Relaxed);
        let _ = bar.join();
    }
    if interrupt.load(Ordering::Relaxed) {
        eprintln!("jam bench: interrupted; the summary covers the requests made until then");
    }
    print_report(&config, &report, args.json);
    Ok(report)
}

type ProgressThread = (
    std::thread::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
);

/// A live progress line on a terminal; nothing when stderr is not one.
/// What `jam bench`'s progress bar measures: requests done of `-n`, or time passed of `-z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gauge {
    /// Requests done, of this many.
    Requests(u64),
    /// Time passed, of this long (in milliseconds on the bar).
    Time(Duration),
}

impl Gauge {
    fn of(config: &BenchConfig) -> Gauge {
        match (config.requests, config.duration) {
            (Some(n), _) => Gauge::Requests(n),
            (None, Some(d)) => Gauge::Time(d),
            (None, None) => Gauge::Requests(0),
        }
    }

    /// The bar's position after `done` requests and `elapsed` time.
    fn position(self, done: u64, elapsed: Duration) -> u64 {
        match self {
            Gauge::Requests(_) => done,
            Gauge::Time(d) => elapsed.min(d).as_millis() as u64,
        }
    }
}

fn progress_bar(config: &BenchConfig, progress: Arc<Progress>) -> Option<ProgressThread> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let gauge = Gauge::of(config);
    let bar = match gauge {
        Gauge::Requests(n) => indicatif::ProgressBar::new(n),
        Gauge::Time(d) => indicatif::ProgressBar::new(d.as_millis() as u64),
    };
    let template = match gauge {
        Gauge::Requests(_) => "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        // A run of -z fills with time; the count goes in the message.
        Gauge::Time(_) => "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop.clone();
    let started = std::time::Instant::now();
    let handle = std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            let ok = progress.ok.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            bar.set_position(gauge.position(ok + errors, started.elapsed()));
            let rate = ok as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(match gauge {
                Gauge::Requests(_) => format!("{rate:.0} req/s, {errors} errors"),
                Gauge::Time(_) => {
                    format!("{} requests, {rate:.0} req/s, {errors} errors", ok + errors)
                }
            });
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    Some((handle, stop))
}

fn print_report(config: &BenchConfig, report: &BenchReport, as_json: bool) {
    let ms = |q: f64| report.latency.value_at_quantile(q) as f64 / 1e6;
    let max_ms = report.latency.max() as f64 / 1e6;
    let mode = match config.mode {
        Mode::ClosedLoop => "closed loop".to_string(),
        Mode::OpenLoop(rate) => format!("open loop at {rate} req/s"),
        Mode::ConnectPerRequest => "connection per request".to_string(),
    };
    if as_json {
        let errors: serde_json::Map<_, _> = report
            .errors
            .iter()
            .map(|(k, v)| (k.name().to_string(), json!(v)))
            .collect();
        let line = json!({
            "target": config.target.to_string(),
            "mode": mode,
            "connections": config.connections,
            "pipeline": config.pipeline,
            "threads": config.threads,
            "ok": report.ok,
            "not_exact": report.variants,
            "errors": errors,
            "error_count": report.error_count(),
            "elapsed_s": report.elapsed.as_secs_f64(),
            "rps": report.throughput(),
            "interrupted": report.interrupted,
            "latency_ms": {
                "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": max_ms,
            },
            "client_cpu_s": report.cpu.as_secs_f64(),
            "client_cpu_share": report.cpu_share(),
            "connections_opened": report.connections,
        });
        say!("{line}");
        return;
    }
    say!(
        "jam bench {}: {} connections, pipeline {}, {mode}, {} threads",
        config.target,
        config.connections,
        config.pipeline,
        config.threads
    );
    say!(
        "  requests    {} ok, {} errors in {:.2} s",
        report.ok,
        report.error_count(),
        report.elapsed.as_secs_f64()
    );
    if report.variants > 0 {
        say!(
            "  not exact   {} good replies were a variant of JAM hh:mm:ss CR LF (--strict counts them as errors)",
            report.variants
        );
    }
    say!("  throughput  {:.0} req/s", report.throughput());
    say!(
        "  latency     p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        max_ms
    );
    say!(
        "  client CPU  {:.2} s ({:.0}% of one core)",
        report.cpu.as_secs_f64(),
        report.cpu_share() * 100.0
    );
    if report.errors.is_empty() {
        say!("  errors      none");
    } else {
        for (kind, n) in &report.errors {
            say!("  errors      {n} {}", kind.name());
        }
    }
}

fn check_command(runtime: &tokio::runtime::Runtime, args: CheckArgs) -> ExitCode {
    match runtime.block_on(check(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("jam check: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn check(args: CheckArgs) -> Result<u8, ClientError> {
    use jam::check::{self, CheckConfig, TargetSpec, report};
    // A grade that cannot be printed is not a pass.
    STDOUT_GONE.store(1, std::sync::atomic::Ordering::Relaxed);
    // Many clients (and several servers at once) need descriptors: take what the system allows.
    let open_files = jam::config::raise_open_file_limit().unwrap_or(1024);
    let mut config = CheckConfig::new();
    config.select(&args.only, &args.skip)?;
    if !(args.max_offset.is_finite() && args.max_offset > 0.0) {
        return Err(ClientError::Usage(
            "--max-offset must be a positive number of seconds".into(),
        ));
    }
    if args.timeout.is_zero() {
        return Err(ClientError::Usage("--timeout must be more than 0".into()));
    }
    config.timeout = args.timeout;
    config.max_offset = args.max_offset;
    config.clients = usize::from(args.clients);
    config.jobs = usize::from(args.jobs);
    config.strict = args.strict;
    let mut specs: Vec<TargetSpec> = args
        .targets
        .iter()
        .map(|t| TargetSpec {
            target: t.clone(),
            name: None,
        })
        .collect();
    if let Some(path) = &args.targets_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Usage(format!(
                "cannot read the targets file {}: {e}",
                path.display()
            ))
        })?;
        specs.extend(TargetSpec::parse_list(&text)?);
    }
    if specs.is_empty() {
        if args.targets_file.is_some() {
            return Err(ClientError::Usage(
                "the targets file names no server".into(),
            ));
        }
        specs.push(TargetSpec {
            target: DEFAULT_TARGET.to_string(),
            name: None,
        });
    }
    for spec in &specs {
        Target::parse(&spec.target)?;
    }
    let sockets = config.clients.saturating_mul(config.jobs.min(specs.len())) as u64;
    if sockets + 64 > open_files {
        eprintln!(
            "jam check: warning: --clients {} × {} servers at once needs {sockets} sockets, more than the open-file limit ({open_files}) allows; use fewer -j or --clients",
            config.clients,
            config.jobs.min(specs.len())
        );
    }
    let points = match &args.points {
        Some(text) => points(text)?,
        None => check::grade::Points::default(),
    };
    // Try every report file before the run, so a wrong path is said at once, not after a class.
    let outputs = Outputs::new(&args.files)?;
    if let Some(interval) = args.watch {
        return watch(args, interval, specs, config, points, outputs).await;
    }
    let started = std::time::Instant::now();
    let reports = check::run_all(specs, &config).await;
    let run = check::server_run(&reports, config.strict, &points);
    let written = outputs.write(&run, None);
    if args.json {
        say!("{}", report::json(&run));
    } else {
        let style = report::Style::new(colored(std::io::stdout().is_terminal()));
        let several = reports.len() > 1;
        for r in &reports {
            if !args.summary && (!several || args.verbose || !r.passed()) {
                say!("{}", report::text("jam check", r, args.verbose, style));
            }
        }
        if several || args.summary || points.given {
            say!("{}", report::summary_table(&run, style).trim_end());
        }
        say!("checked in {}", report::took(started.elapsed()));
    }
    if let Err(e) = written {
        eprintln!("jam check: {e}");
        return Ok(1);
    }
    Ok(check::exit_code(&reports))
}

/// `--points`: the points themselves, or the name of a file that holds them.
fn points(text: &str) -> Result<jam::check::grade::Points, ClientError> {
    use jam::check::{CATALOGUE, Graded, grade::Points};
    let ids: Vec<&str> = CATALOGUE.iter().map(Graded::name).collect();
    if text.contains('=') {
        return Points::parse(text, &ids).map_err(|e| ClientError::Usage(format!("--points: {e}")));
    }
    let file = std::fs::read_to_string(text).map_err(|e| {
        ClientError::Usage(format!(
            "--points {text}: not POINTS (must=N,should=M) and not a file that can be read: {e}"
        ))
    })?;
    Points::parse(&file, &ids).map_err(|e| ClientError::Usage(format!("--points {text}: {e}")))
}

/// The report files a run writes besides its output: JUnit, HTML, CSV, Gradescope.
struct Outputs {
    files: Vec<(Output, std::path::PathBuf)>,
    command: String,
}

#[derive(Debug, Clone, Copy)]
enum Output {
    Junit,
    Html,
    Csv,
    Gradescope,
}

impl Output {
    fn name(self) -> &'static str {
        match self {
            Output::Junit => "JUnit",
            Output::Html => "HTML",
            Output::Csv => "CSV",
            Output::Gradescope => "Gradescope",
        }
    }
}

impl Outputs {
    /// Creates every file asked for (empty), so that a path that cannot be written is an error
    /// before the run.
    fn new(asked: &ReportFiles) -> Result<Outputs, ClientError> {
        let asked = [
            (Output::Junit, &asked.junit),
            (Output::Html, &asked.html),
            (Output::Csv, &asked.csv),
            (Output::Gradescope, &asked.gradescope),
        ];
        let mut files: Vec<(Output, std::path::PathBuf)> = Vec::new();
        for (kind, path) in asked {
            let Some(path) = path else { continue };
            if let Some((other, _)) = files
                .iter()
                .find(|(_, p): &&(Output, std::path::PathBuf)| p == path)
            {
                return Err(ClientError::Usage(format!(
                    "the {} and {} files are both {}",
                    Output::name(*other),
                    kind.name(),
                    path.display()
                )));
            }
            files.push((kind, path.clone()));
        }
        for (kind, path) in &files {
            std::fs::File::create(path).map_err(|e| {
                ClientError::Usage(format!(
                    "cannot write the {} file {}: {e}",
                    kind.name(),
                    path.display()
                ))
            })?;
        }
        Ok(Outputs {
            files,
            // `jam`, not the path it was started by: the header is read by people.
            command: shell_words(
                std::iter::once("jam".to_string()).chain(std::env::args().skip(1)),
            ),
        })
    }

    /// Writes every file from `run`; `doc` is the board's document when the live board made one.
    fn write<C: jam::check::Graded>(
        &self,
        run: &jam::check::report::Run<'_, C>,
        doc: Option<&serde_json::Value>,
    ) -> Result<(), String> {
        use jam::check::{page, report};
        for (kind, path) in &self.files {
            let text = match kind {
                Output::Junit => report::junit(run),
                Output::Html => match doc {
                    Some(doc) => page::html(doc),
                    None => {
                        let meta = page::Meta {
                            generated_at: page::now_text(),
                            command: self.command.clone(),
                        };
                        page::html(&page::document(run, &meta))
                    }
                },
                Output::Csv => report::csv(run).map_err(|e| format!("cannot write CSV: {e}"))?,
                Output::Gradescope => format!("{:#}\n", report::gradescope(run)),
            };
            // Written whole, then renamed: a reader (or the next round) never sees half a file.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, text)
                .and_then(|()| std::fs::rename(&partial, path))
                .map_err(|e| {
                    format!(
                        "cannot write the {} file {}: {e}",
                        kind.name(),
                        path.display()
                    )
                })?;
        }
        Ok(())
    }
}

/// The command line as one line a shell would take back (arguments with spaces quoted).
fn shell_words(args: impl Iterator<Item = String>) -> String {
    args.map(|a| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
        {
            a
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// `jam check --watch`: the live board, until Ctrl-C or SIGTERM.
async fn watch(
    args: CheckArgs,
    interval: Duration,
    specs: Vec<jam::check::TargetSpec>,
    config: jam::check::CheckConfig,
    points: jam::check::grade::Points,
    outputs: Outputs,
) -> Result<u8, ClientError> {
    use jam::check::{self, live, report};
    let (listener, local) = live::bind(&args.serve).await?;
    if !local.ip().is_loopback() {
        eprintln!(
            "jam check: the board on {local} shows every server's transcripts to anyone who can reach it"
        );
    }
    let from_file = args.targets_file.is_some();
    let watch = live::Watch {
        interval,
        history: usize::from(args.history),
        // The file's servers are read by the board, again whenever the file changes.
        targets: if from_file {
            args.targets
                .iter()
                .map(|t| check::TargetSpec {
                    target: t.clone(),
                    name: None,
                })
                .collect()
        } else {
            specs
        },
        targets_file: args.targets_file.clone(),
        command: outputs.command.clone(),
    };
    say!(
        "live board at http://{local}/ (checking every {}; Ctrl-C ends)",
        report::took(interval)
    );
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => {}
            }
            stop.cancel();
        });
    }
    let style = report::Style::new(colored(std::io::stdout().is_terminal()));
    let mut failed_write = false;
    let mut on_round =
        |run: &report::Run<'_, check::Case>, doc: &serde_json::Value, took: Duration| {
            let passed = run.reports.iter().filter(|r| r.passed()).count();
            say!(
                "{} round {}: {passed} of {} servers passed (checked in {})",
                check::page::now_text(),
                doc["board"]["live"]["round"],
                run.reports.len(),
                report::took(took)
            );
            if args.summary {
                say!("{}", report::summary_table(run, style).trim_end());
            }
            if let Err(e) = outputs.write(run, Some(doc)) {
                if !failed_write {
                    eprintln!("jam check: {e}");
                }
                failed_write = true;
            }
        };
    let mut say_line = |line: String| say!("jam check: {line}");
    let reports = live::run(
        watch,
        &config,
        &points,
        listener,
        stop,
        &mut on_round,
        &mut say_line,
    )
    .await;
    if reports.is_empty() {
        return Ok(130);
    }
    let run = check::server_run(&reports, config.strict, &points);
    say!("{}", report::summary_table(&run, style).trim_end());
    if failed_write {
        return Ok(1);
    }
    Ok(check::exit_code(&reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_run_fills_its_bar_with_time_and_a_counted_one_with_requests() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            Gauge::Time(ten).position(5000, Duration::from_secs(4)),
            4000
        );
        assert_eq!(
            Gauge::Time(ten).position(5000, Duration::from_secs(12)),
            10_000
        );
        assert_eq!(
            Gauge::Requests(100).position(40, Duration::from_secs(4)),
            40
        );
    }
}

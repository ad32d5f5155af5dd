//! `jamd`: the jam time server. Flags → config → logging → bind → serve until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use jam::clock::{self, LocalClock, SystemClock};
use jam::config::{self, ServerConfig, format_duration, format_size, parse_duration, parse_size};
use jam::generate::{self, Generate};
use jam::logging::{self, LogFormat};
use jam::metrics;
use jam::privileges::{self, Dropped};
use jam::service::Service;
use jam::systemd;
use jam::timesync::ClockWatch;
use jam::{Server, listener, ports};
use jiff::tz::TimeZone;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The man page's sections that the flags do not hold.
const MAN_SECTIONS: &[generate::Section] = &[
    generate::Section {
        title: "SIGNALS",
        paragraphs: &[
            "SIGINT or SIGTERM: stop accepting, answer every request clients already sent, close \
             each session as it falls idle, and exit 0 within --shutdown-grace.",
            "A second SIGINT or SIGTERM during that drain: exit at once, with status 130 or 143. \
             Either signal while jamd waits for a held port ends it at once, with the same \
             statuses.",
        ],
    },
    generate::Section {
        title: "EXAMPLES",
        paragraphs: &[
            "  jamd\n  jamd --listen 127.0.0.1:4000 --tz Asia/Jakarta\n  jamd --rfc868 :37 \
             --daytime :13 --user nobody\n  jamd --metrics 127.0.0.1:9145 --log-format json\n  \
             jamd --check-config --listen :45000",
            "Try it: nc localhost 45000, then type TIME.",
        ],
    },
    generate::Section {
        title: "SEE ALSO",
        paragraphs: &["jam(1), systemd.socket(5), sysctl(8)"],
    },
];

/// A check interval that means "never again" (tokio caps timers at about two years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

/// jamd: a TCP time server. Send `TIME` (CR LF), get `JAM hh:mm:ss`; `QUIT` ends the session.
///
/// Try it: `nc localhost 45000`, then type TIME.
#[derive(Debug, Parser)]
#[command(
    name = "jamd",
    version,
    after_help = "Exit status: 0 stopped cleanly (SIGINT or SIGTERM); 1 a runtime failure (cannot \
                  listen, cannot drop privileges); 2 a usage error (a bad flag, environment \
                  variable, address or log filter); 130 or 143 a second SIGINT or SIGTERM during \
                  the drain."
)]
struct Args {
    /// Address to listen on (repeatable): 127.0.0.1:45000, [::1]:45000, :45000.
    /// [default: [::]:PORT, dual-stack; 0.0.0.0:PORT where IPv6 is unavailable; under systemd
    /// socket activation, the passed sockets, and then --listen is an error]
    #[arg(
        short,
        long = "listen",
        value_name = "ADDR",
        env = "JAMD_LISTEN",
        value_delimiter = ','
    )]
    listen: Vec<String>,

    /// Port for the default listener (ignored with --listen).
    #[arg(short, long, value_name = "PORT", env = "JAMD_PORT", default_value_t = config::DEFAULT_PORT)]
    port: u16,

    /// Also serve RFC 868 Time (4 bytes: seconds since 1900, then close) on ADDR (repeatable).
    /// Off by default; the standard port is 37.
    #[arg(long, value_name = "ADDR", env = "JAMD_RFC868", value_delimiter = ',')]
    rfc868: Vec<String>,

    /// Also serve RFC 867 Daytime (one line with date and time, then close) on ADDR
    /// (repeatable). Off by default; the standard port is 13.
    #[arg(long, value_name = "ADDR", env = "JAMD_DAYTIME", value_delimiter = ',')]
    daytime: Vec<String>,

    /// When a port is in use but no server listens on it (closed connections hold it for 60 s in
    /// TIME_WAIT), retry every second for this long (0 = fail at once; at most 24h). A port another server
    /// listens on fails at once.
    #[arg(long, value_name = "DURATION", env = "JAMD_BIND_WAIT", default_value = default_duration(|c| c.bind_wait), value_parser = parse_duration)]
    bind_wait: Duration,

    /// Let several jamd processes listen on the same address (SO_REUSEPORT); the kernel spreads
    /// new connections over them. Every process must set it.
    #[arg(long, env = "JAMD_REUSE_PORT", action = clap::ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    reuse_port: bool,

    /// Run as this user once every port is bound and the file limit is raised (started as root,
    /// e.g. to bind port 37 or 13). If the switch fails, jamd exits instead of serving as root.
    /// Under systemd, DynamicUser= does this instead.
    #[arg(long, value_name = "NAME", env = "JAMD_USER")]
    user: Option<String>,

    /// With --user: run with this group instead of the user's own.
    #[arg(long, value_name = "NAME", env = "JAMD_GROUP", requires = "user")]
    group: Option<String>,

    /// Require a PROXY protocol header (v1 or v2, as HAProxy's send-proxy sends) on every
    /// connection and log the client address it carries; connections without one are closed.
    /// Only for servers behind a load balancer: a client could otherwise forge its address.
    #[arg(long, env = "JAMD_PROXY_PROTOCOL", action = clap::ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    proxy_protocol: bool,

    /// Serve Prometheus metrics over HTTP at http://ADDR/metrics (repeatable). Off by default;
    /// bind it to a private address: the metrics have no authentication.
    #[arg(long, value_name = "ADDR", env = "JAMD_METRICS", value_delimiter = ',')]
    metrics: Vec<String>,

    /// How often to check that the system clock is synchronised (kernel adjtimex state); a
    /// change is logged (0 = only at start-up; at most 24h).
    #[arg(long, value_name = "DURATION", env = "JAMD_CLOCK_CHECK", default_value = default_duration(|c| c.clock_check), value_parser = parse_duration)]
    clock_check: Duration,

    /// Report UTC instead of the local time zone. From the environment, JAMD_UTC takes 1/0,
    /// true/false, yes/no, on/off.
    #[arg(long, env = "JAMD_UTC", action = clap::ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    utc: bool,

    /// Report time in this IANA zone (e.g. Asia/Jakarta) [default: TZ, then /etc/localtime].
    #[arg(long, value_name = "ZONE", env = "JAMD_TZ")]
    tz: Option<String>,

    /// Longest request line in bytes (1 to 64KiB), not counting the line end; longer lines get
    /// `ERR line too long` and the connection is closed.
    #[arg(long, value_name = "BYTES", env = "JAMD_MAX_LINE", default_value_t = ServerConfig::default().max_line, value_parser = parse_size)]
    max_line: usize,

    /// Most concurrent connections, 1 to 1000000; more get `ERR server busy` and are closed.
    /// [default: the open-file limit minus headroom]
    #[arg(long, value_name = "N", env = "JAMD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,

    /// Most concurrent connections from one address (an IPv4 address, or an IPv6 /64; behind
    /// --proxy-protocol the client's); more get `ERR too many connections from your address` and
    /// are closed. `auto`: the larger of a quarter of --max-connections and
    /// min(--max-connections, 16); 0: no per-address limit.
    #[arg(long, value_name = "N|auto", env = "JAMD_MAX_CONNECTIONS_PER_IP", default_value = default_per_ip(), value_parser = parse_per_ip)]
    max_connections_per_ip: PerIpArg,

    /// Close a connection with no complete request for this long (0 = never; at most 24h).
    #[arg(long, value_name = "DURATION", env = "JAMD_IDLE_TIMEOUT", default_value = default_duration(|c| c.idle_timeout), value_parser = parse_duration)]
    idle_timeout: Duration,

    /// A started line must be completed within this time (0 = no limit; at most 24h).
    #[arg(long, value_name = "DURATION", env = "JAMD_LINE_TIMEOUT", default_value = default_duration(|c| c.line_timeout), value_parser = parse_duration)]
    line_timeout: Duration,

    /// Close a connection whose replies make no progress for this long (0 = never; at most 24h).
    #[arg(long, value_name = "DURATION", env = "JAMD_WRITE_TIMEOUT", default_value = default_duration(|c| c.write_timeout), value_parser = parse_duration)]
    write_timeout: Duration,

    /// Stop reading from a client once this many reply bytes (1 to 16MiB) wait to be sent to it.
    #[arg(long, value_name = "BYTES", env = "JAMD_MAX_OUTPUT", default_value = default_size(|c| c.max_output), value_parser = parse_size)]
    max_output: usize,

    /// On SIGINT/SIGTERM, wait at most this long for connections to finish (0 = close at once; at
    /// most 24h).
    #[arg(long, value_name = "DURATION", env = "JAMD_SHUTDOWN_GRACE", default_value = default_duration(|c| c.shutdown_grace), value_parser = parse_duration)]
    shutdown_grace: Duration,

    /// Event loops, one thread each, that serve connections, 1 to 1024 [default: one per CPU this
    /// process may run on].
    #[arg(long, value_name = "N", env = "JAMD_THREADS", value_parser = positive_count)]
    threads: Option<usize>,

    /// Check the flags and environment, print the settings and where each came from (default,
    /// environment, flag), and exit: 0 when jamd would start, 2 when not. Binds nothing.
    #[arg(long)]
    check_config: bool,

    /// Log level or filter directives (error, warn, info, debug, trace) [default: RUST_LOG, then info].
    #[arg(long, value_name = "LEVEL", env = "JAMD_LOG_LEVEL")]
    log_level: Option<String>,

    /// Log format.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "JAMD_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormatArg,

    /// Log only warnings and errors.
    #[arg(short, long, conflicts_with = "log_level")]
    quiet: bool,

    /// Print the man page or a shell completion script to stdout and exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    generate: Option<Generate>,
}

/// A default for `--help`, formatted from `ServerConfig::default()`, the one place it is written.
fn default_duration(pick: fn(&ServerConfig) -> Duration) -> String {
    format_duration(pick(&ServerConfig::default()))
}

/// A size default for `--help`, formatted from `ServerConfig::default()`.
/// `--max-connections-per-ip`'s default as typed: `auto`, or ServerConfig's number.
fn default_per_ip() -> String {
    match ServerConfig::default().max_connections_per_ip {
        None => "auto".into(),
        Some(n) => n.to_string(),
    }
}

fn default_size(pick: fn(&ServerConfig) -> usize) -> String {
    format_size(pick(&ServerConfig::default()))
}

fn main() -> std::process::ExitCode {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Checked here, not with clap's conflicts_with: JAMD_UTC=false with --tz is no conflict.
    if args.utc && args.tz.is_some() {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--utc (or JAMD_UTC) and --tz (or JAMD_TZ) cannot both be used: pick one zone",
            )
            .exit();
    }
    if let Some(what) = args.generate {
        return match generate::write(
            what,
            Args::command(),
            MAN_SECTIONS,
            &mut std::io::stdout().lock(),
        ) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jamd: error: cannot write to stdout: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let format = args.log_format.into();
    let result = if args.check_config {
        check_config(&args, &matches)
    } else {
        run(args)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A command line or environment that cannot work is a usage error, as clap's own are.
        Err(e)
            if e.downcast_ref::<logging::FilterError>().is_some()
                || matches!(
                    e.downcast_ref::<logging::LogError>(),
                    Some(logging::LogError::Filter(_))
                )
                || e.downcast_ref::<config::ConfigError>().is_some()
                || e.downcast_ref::<UsageError>().is_some()
                || matches!(
                    e.downcast_ref::<listener::BindError>(),
                    Some(listener::BindError::Address { .. })
                ) =>
        {
            say_directly(format, "ERROR", &format!("error: {e:#}"));
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            say_directly(format, "ERROR", &format!("error: {e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes one line to stderr directly, not through the logging thread (which may not be set up,
/// or may not get to print before the process exits), in the log format: `jamd: MESSAGE` as text,
/// or a JSON object with the fields the JSON logs have.
/// `--log-format`: the library's [`LogFormat`] as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(format: LogFormatArg) -> LogFormat {
        match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

fn say_directly(format: LogFormat, level: &str, message: &str) {
    match format {
        LogFormat::Text => eprintln!("jamd: {message}"),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": jiff::Timestamp::now().to_string(),
                "level": level,
                "message": message,
            })
        ),
    }
}

/// The connection limit the open-file limit allows (the default of --max-connections).
fn connection_ceiling(open_files: Option<u64>) -> usize {
    open_files
        .map_or(
            ServerConfig::default().max_connections,
            config::connections_for_open_files,
        )
        .min(config::MAX_CONNECTIONS_LIMIT)
}

/// The server's settings from the flags and environment (not yet validated).
fn server_config(args: &Args, open_files: Option<u64>) -> ServerConfig {
    ServerConfig {
        max_line: args.max_line,
        max_connections: args
            .max_connections
            .unwrap_or_else(|| connection_ceiling(open_files)),
        max_connections_per_ip: args.max_connections_per_ip.0,
        idle_timeout: args.idle_timeout,
        line_timeout: args.line_timeout,
        write_timeout: args.write_timeout,
        max_output: args.max_output,
        shutdown_grace: args.shutdown_grace,
        proxy_protocol: args.proxy_protocol,
        bind_wait: args.bind_wait,
        clock_check: args.clock_check,
        threads: args.threads.unwrap_or(ServerConfig::default().threads),
        ..ServerConfig::default()
    }
}

/// `--check-config`: every check jamd makes before it starts, without binding or logging; prints
/// each setting, its value and where it came from.
fn check_config(args: &Args, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match &args.log_level {
        Some(level) => drop(logging::parse_filter("--log-level", level)?),
        None => {
            if let Ok(directives) = std::env::var("RUST_LOG")
                && !directives.trim().is_empty()
            {
                drop(logging::parse_filter("RUST_LOG", &directives)?);
            }
        }
    }
    let open_files = config::raise_open_file_limit().ok();
    let config = server_config(args, open_files);
    config.validate()?;
    zone_of(args)?;
    same_address_twice(args)?;
    for spec in args
        .listen
        .iter()
        .chain(&args.metrics)
        .chain(&args.rfc868)
        .chain(&args.daytime)
    {
        // Names are resolved too (nothing is bound): what would fail at start fails here.
        listener::resolve_listen(spec)?;
    }
    let mut out = String::from("jamd would start with:\n");
    for arg in Args::command().get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version" | "generate" | "check_config") {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let value = match matches.get_raw(id) {
            Some(values) => values
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(","),
            None => "-".to_string(),
        };
        let source = match matches.value_source(id) {
            Some(clap::parser::ValueSource::CommandLine) => "flag".to_string(),
            Some(clap::parser::ValueSource::EnvVariable) => arg
                .get_env()
                .map_or("environment".into(), |e| e.to_string_lossy().into_owned()),
            Some(clap::parser::ValueSource::DefaultValue) => "default".to_string(),
            _ => "not set".to_string(),
        };
        out.push_str(&format!("  --{long:<24} {value:<24} ({source})\n"));
    }
    out.push_str(&format!(
        "  effective: max_connections={} max_connections_per_ip={} threads={}\n",
        config.max_connections,
        config
            .per_ip_limit()
            .map_or("off".to_string(), |n| n.to_string()),
        if config.threads == 0 {
            "one per CPU".to_string()
        } else {
            config.threads.to_string()
        }
    ));
    print!("{out}");
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    // First, while jamd has one thread: taking the sockets clears LISTEN_FDS (systemd.rs).
    let activated = systemd::take_listeners()?;
    let default_level = if args.quiet { "warn" } else { "info" };
    let _log_guard = logging::init(
        args.log_format.into(),
        args.log_level.as_deref(),
        default_level,
    )?;

    let open_files = match config::raise_open_file_limit() {
        Ok(limit) => Some(limit),
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    };
    let config = server_config(&args, open_files);
    let (max_connections, derived) = (config.max_connections, connection_ceiling(open_files));
    config.validate()?;
    if max_connections > derived {
        warn!(
            max_connections,
            open_files,
            "--max-connections exceeds what the open-file limit allows; accepts will pause when descriptors run out"
        );
    }
    let zone = zone_of(&args)?;
    same_address_twice(&args)?;

    // Connections are served by the server's own event loops (--threads); tokio only runs what
    // is off the hot path (signals, binding, the metrics endpoint, the clock watch), so one
    // thread is enough.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("jamd-main")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, config, zone, activated))
}

/// Every listening socket, bound before serving begins.
struct Bound {
    jam: Vec<std::net::TcpListener>,
    services: Vec<(std::net::TcpListener, Service)>,
    metrics: Vec<std::net::TcpListener>,
    /// Fixed ports (not 0) that were asked for, for the ephemeral-range check.
    ports: Vec<u16>,
}

/// The bind phase: every listener, waiting out ports that closing connections hold.
/// The jam protocol's sockets: listening already (passed by systemd), or bound and to listen.
enum JamSockets {
    Passed(Vec<std::net::TcpListener>),
    Bound(Vec<listener::Bound>),
}

async fn bind_all(
    args: &Args,
    wait: Duration,
    activated: Option<Vec<std::net::TcpListener>>,
) -> anyhow::Result<Bound> {
    let mut ports = Vec::new();
    // Every address is bound first and listened on only once all are (listener::Bound): while a
    // held port is waited for, no client can connect to another one and wait unanswered.
    let jam = if let Some(passed) = activated {
        // Two sources of addresses would leave one silently unused: refuse, and say which.
        if !args.listen.is_empty() {
            anyhow::bail!(
                "--listen (or JAMD_LISTEN) cannot be combined with systemd socket activation; \
                 set the addresses in the .socket unit (ListenStream=) or drop the .socket unit"
            );
        }
        if args.reuse_port {
            warn!(
                "--reuse-port has no effect on sockets passed by systemd; set ReusePort=yes in the .socket unit"
            );
        }
        info!(
            sockets = passed.len(),
            "socket activation: serving the listening sockets passed by systemd instead of binding"
        );
        for listener in &passed {
            ports.push(listener.local_addr()?.port());
        }
        JamSockets::Passed(passed)
    } else if args.listen.is_empty() {
        ports.push(args.port);
        JamSockets::Bound(listener::bind_default(args.port, args.reuse_port, wait).await?)
    } else {
        ports.extend(listener::listen_ports(&args.listen));
        JamSockets::Bound(listener::bind_all(&args.listen, args.reuse_port, wait).await?)
    };
    let mut services = Vec::new();
    for (specs, service) in [
        (&args.rfc868, Service::Time),
        (&args.daytime, Service::Daytime),
    ] {
        ports.extend(listener::listen_ports(specs));
        for bound in listener::bind_all(specs, args.reuse_port, wait).await? {
            services.push((bound, service));
        }
    }
    ports.extend(listener::listen_ports(&args.metrics));
    let metrics = listener::bind_all(&args.metrics, false, wait).await?;
    // Everything is bound: now listen, all at once.
    let jam = match jam {
        JamSockets::Passed(passed) => passed,
        JamSockets::Bound(bound) => listener::listen(bound)?,
    };
    let services = services
        .into_iter()
        .map(|(bound, service)| Ok((listener::listen(vec![bound])?.remove(0), service)))
        .collect::<Result<Vec<_>, listener::BindError>>()?;
    let metrics = listener::listen(metrics)?;
    ports.retain(|&port| port != 0);
    ports.sort_unstable();
    ports.dedup();
    Ok(Bound {
        jam,
        services,
        metrics,
        ports,
    })
}

async fn serve(
    args: Args,
    config: ServerConfig,
    zone: TimeZone,
    activated: Option<Vec<std::net::TcpListener>>,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // A signal while a held port is being waited for ends jamd at once.
    let bound = tokio::select! {
        bound = bind_all(&args, config.bind_wait, activated) => bound?,
        _ = sigint.recv() => exit_now(args.log_format.into(), "SIGINT while waiting for a port; exiting", 130),
        _ = sigterm.recv() => exit_now(args.log_format.into(), "SIGTERM while waiting for a port; exiting", 143),
    };
    // Every port is bound and the file limit raised: root is no longer needed.
    match &args.user {
        Some(user) => match privileges::drop_to(user, args.group.as_deref())? {
            Dropped::AlreadyThere => {}
            Dropped::Switched { user, uid, gid } => {
                info!(user, uid, gid, "dropped root privileges");
            }
        },
        None if privileges::running_as_root() => warn!(
            "running as root: start with --user NAME (e.g. --user nobody) after binding, or under systemd with DynamicUser=, so that no bug can use root's powers"
        ),
        None => {}
    }
    let exposed: Vec<u16> = bound
        .ports
        .iter()
        .copied()
        .filter(|&port| ports::exposed(port) == Some(true))
        .collect();
    // One warning per port, so that the port is a number in JSON logs, not a list in a string.
    for port in exposed {
        warn!(
            port,
            "a restart of jamd may find its port held by a closed outgoing connection: {}",
            ports::explain_exposed(&[port])
        );
    }
    let clock = LocalClock::new(Arc::new(SystemClock), zone);
    let zone_name = clock::zone_name(clock.zone());
    let grace = config.shutdown_grace;
    let mut server = Server::new(bound.jam, config.clone(), clock);
    for (listener, service) in bound.services {
        server = server.with_listener(listener, service);
    }
    let addrs = server
        .local_addrs()?
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    info!(
        version = env!("CARGO_PKG_VERSION"),
        zone = %zone_name,
        max_connections = config.max_connections,
        max_connections_per_ip = config.per_ip_limit().unwrap_or(0),
        max_line = config.max_line,
        idle_timeout = %format_duration(config.idle_timeout),
        line_timeout = %format_duration(config.line_timeout),
        write_timeout = %format_duration(config.write_timeout),
        max_output = config.max_output,
        proxy_protocol = config.proxy_protocol,
        "jamd listening on {addrs}"
    );
    for service in [Service::Time, Service::Daytime] {
        let addrs = server.addrs_of(service)?;
        if !addrs.is_empty() {
            let addrs: Vec<_> = addrs.iter().map(ToString::to_string).collect();
            info!(
                service = service.label(),
                "{service} service listening on {}",
                addrs.join(", ")
            );
        }
    }

    let shutdown = CancellationToken::new();
    let interval = if config.clock_check.is_zero() {
        FAR_FUTURE
    } else {
        config.clock_check
    };
    let stats = server.stats();
    tokio::spawn(ClockWatch::new().run(interval, shutdown.clone(), {
        let stats = stats.clone();
        move |reading| stats.metrics().record_clock(reading)
    }));
    if !bound.metrics.is_empty() {
        let render: Arc<dyn Fn() -> String + Send + Sync> =
            Arc::new(move || stats.render_metrics());
        for listener in register(bound.metrics)? {
            metrics::log_listening(listener.local_addr()?);
            tokio::spawn(metrics::serve(listener, render.clone(), shutdown.clone()));
        }
    }
    let server = tokio::spawn(server.run(shutdown.clone()));
    // Only now is every listener (jam, RFC 868/867, metrics) open.
    systemd::notify_ready(&format!("serving on {addrs}"));
    let first = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    systemd::notify_stopping();
    let log_format: LogFormat = args.log_format.into();
    info!(
        signal = first,
        grace = %format_duration(grace),
        "shutting down; a second signal exits at once"
    );
    shutdown.cancel();
    tokio::select! {
        stats = server => {
            let stats = stats.context("the server task failed")?;
            info!(served = stats.accepted, rejected = stats.rejected, "jamd stopped");
            Ok(())
        }
        _ = sigint.recv() => exit_now(log_format, "second SIGINT; exiting now", 130),
        _ = sigterm.recv() => exit_now(log_format, "second SIGTERM; exiting now", 143),
    }
}

/// Hands bound listeners to the runtime.
fn register(listeners: Vec<std::net::TcpListener>) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    listeners
        .into_iter()
        .map(tokio::net::TcpListener::from_std)
        .collect::<Result<Vec<_>, _>>()
        .context("cannot register the listener")
}

fn exit_now(format: LogFormat, message: &str, code: i32) -> ! {
    say_directly(format, "WARN", message);
    std::process::exit(code)
}

/// A setting that cannot work as given, found after clap's own checks: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// The zone `--utc`/`--tz` name, or the system's; an unknown name is a usage error.
fn zone_of(args: &Args) -> anyhow::Result<TimeZone> {
    Ok(if args.utc {
        TimeZone::UTC
    } else if let Some(name) = &args.tz {
        clock::zone_by_name(name).map_err(|e| UsageError(format!("{e:#}")))?
    } else {
        TimeZone::try_system().unwrap_or_else(|e| {
            warn!(error = %e, "cannot determine the local time zone; using UTC");
            TimeZone::UTC
        })
    })
}

/// The same address given to two flags (`--listen` and `--daytime`, say): each would take half
/// the connections (with --reuse-port) or the second would fail; say so before binding.
fn same_address_twice(args: &Args) -> Result<(), UsageError> {
    let mut seen: Vec<(std::net::SocketAddr, &str)> = Vec::new();
    for (flag, specs) in [
        ("--listen", &args.listen),
        ("--rfc868", &args.rfc868),
        ("--daytime", &args.daytime),
        ("--metrics", &args.metrics),
    ] {
        for spec in specs {
            for addr in listener::resolve_listen(spec).unwrap_or_default() {
                if addr.port() == 0 {
                    continue;
                }
                if let Some((_, other)) = seen.iter().find(|(a, _)| *a == addr) {
                    return Err(UsageError(format!(
                        "{addr} is given to both {other} and {flag}: one address serves one \
                         protocol"
                    )));
                }
                seen.push((addr, flag));
            }
        }
    }
    Ok(())
}

/// A count of at least 1 (0 would silently mean something else).
fn positive_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-connections-per-ip`: a number, or `auto` (`None`).
#[derive(Debug, Clone, Copy)]
struct PerIpArg(Option<usize>);

fn parse_per_ip(s: &str) -> Result<PerIpArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(PerIpArg(None));
    }
    s.parse()
        .map(|n| PerIpArg(Some(n)))
        .map_err(|_| format!("expected a number of connections or `auto`, got {s:?}"))
}

complete -c jamd -s l -l listen -d 'Address to listen on (repeatable): 127.0.0.1:45000, [::1]:45000, :45000. [default: [::]:PORT, dual-stack; 0.0.0.0:PORT where IPv6 is unavailable; under systemd socket activation, the passed sockets, and then --listen is an error]' -r
complete -c jamd -s p -l port -d 'Port for the default listener (ignored with --listen)' -r
complete -c jamd -l rfc868 -d 'Also serve RFC 868 Time (4 bytes: seconds since 1900, then close) on ADDR (repeatable). Off by default; the standard port is 37' -r
complete -c jamd -l daytime -d 'Also serve RFC 867 Daytime (one line with date and time, then close) on ADDR (repeatable). Off by default; the standard port is 13' -r
complete -c jamd -l bind-wait -d 'When a port is in use but no server listens on it (closed connections hold it for 60 s in TIME_WAIT), retry every second for this long (0 = fail at once; at most 24h). A port another server listens on fails at once' -r
complete -c jamd -l user -d 'Run as this user once every port is bound and the file limit is raised (started as root, e.g. to bind port 37 or 13). If the switch fails, jamd exits instead of serving as root. Under systemd, DynamicUser= does this instead' -r
complete -c jamd -l group -d 'With --user: run with this group instead of the user\'s own' -r
complete -c jamd -l metrics -d 'Serve Prometheus metrics over HTTP at http://ADDR/metrics (repeatable). Off by default; bind it to a private address: the metrics have no authentication' -r
complete -c jamd -l clock-check -d 'How often to check that the system clock is synchronised (kernel adjtimex state); a change is logged (0 = only at start-up; at most 24h)' -r
complete -c jamd -l tz -d 'Report time in this IANA zone (e.g. Asia/Jakarta) [default: TZ, then /etc/localtime]' -r
complete -c jamd -l max-line -d 'Longest request line in bytes (1 to 64KiB), not counting the line end; longer lines get `ERR line too long` and the connection is closed' -r
complete -c jamd -l max-connections -d 'Most concurrent connections, 1 to 1000000; more get `ERR server busy` and are closed. [default: the open-file limit minus headroom]' -r
complete -c jamd -l max-connections-per-ip -d 'Most concurrent connections from one address (an IPv4 address, or an IPv6 /64; behind --proxy-protocol the client\'s); more get `ERR too many connections from your address` and are closed. `auto`: the larger of a quarter of --max-connections and min(--max-connections, 16); 0: no per-address limit' -r
complete -c jamd -l idle-timeout -d 'Close a connection with no complete request for this long (0 = never; at most 24h)' -r
complete -c jamd -l line-timeout -d 'A started line must be completed within this time (0 = no limit; at most 24h)' -r
complete -c jamd -l write-timeout -d 'Close a connection whose replies make no progress for this long (0 = never; at most 24h)' -r
complete -c jamd -l max-output -d 'Stop reading from a client once this many reply bytes (1 to 16MiB) wait to be sent to it' -r
complete -c jamd -l shutdown-grace -d 'On SIGINT/SIGTERM, wait at most this long for connections to finish (0 = close at once; at most 24h)' -r
complete -c jamd -l threads -d 'Event loops, one thread each, that serve connections, 1 to 1024 [default: one per CPU this process may run on]' -r
complete -c jamd -l log-level -d 'Log level or filter directives (error, warn, info, debug, trace) [default: RUST_LOG, then info]' -r
complete -c jamd -l log-format -d 'Log format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c jamd -l generate -d 'Print the man page or a shell completion script to stdout and exit' -r -f -a "man\t'The man page (roff), section 1'
complete-bash\t'A bash completion script'
complete-zsh\t'A zsh completion script'
complete-fish\t'A fish completion script'
complete-elvish\t'An elvish completion script'
complete-powershell\t'A PowerShell completion script'"
complete -c jamd -l reuse-port -d 'Let several jamd processes listen on the same address (SO_REUSEPORT); the kernel spreads new connections over them. Every process must set it'
complete -c jamd -l proxy-protocol -d 'Require a PROXY protocol header (v1 or v2, as HAProxy\'s send-proxy sends) on every connection and log the client address it carries; connections without one are closed. Only for servers behind a load balancer: a client could otherwise forge its address'
complete -c jamd -l utc -d 'Report UTC instead of the local time zone. From the environment, JAMD_UTC takes 1/0, true/false, yes/no, on/off'
complete -c jamd -l check-config -d 'Check the flags and environment, print the settings and where each came from (default, environment, flag), and exit: 0 when jamd would start, 2 when not. Binds nothing'
complete -c jamd -s q -l quiet -d 'Log only warnings and errors'
complete -c jamd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jamd -s V -l version -d 'Print version'

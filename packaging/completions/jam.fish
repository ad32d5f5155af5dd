# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_jam_global_optspecs
    string join \n color= generate= h/help V/version
end

function __fish_jam_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_jam_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_jam_using_subcommand
    set -l cmd (__fish_jam_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c jam -n "__fish_jam_needs_command" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_needs_command" -l generate -d 'Print the man page or a shell completion script to stdout and exit' -r -f -a "man\t'The man page (roff), section 1'
complete-bash\t'A bash completion script'
complete-zsh\t'A zsh completion script'
complete-fish\t'A fish completion script'
complete-elvish\t'An elvish completion script'
complete-powershell\t'A PowerShell completion script'"
complete -c jam -n "__fish_jam_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_needs_command" -s V -l version -d 'Print version'
complete -c jam -n "__fish_jam_needs_command" -f -a "time" -d 'Ask the server for the time (the default): prints `JAM hh:mm:ss`'
complete -c jam -n "__fish_jam_needs_command" -f -a "shell" -d 'Interactive session with line editing and history'
complete -c jam -n "__fish_jam_needs_command" -f -a "offset" -d 'Estimate the server clock\'s offset from the local clock, to well under a second'
complete -c jam -n "__fish_jam_needs_command" -f -a "bench" -d 'Load-test a server (jamd, or any line protocol with --request/--expect)'
complete -c jam -n "__fish_jam_needs_command" -f -a "check" -d 'Grade one or more time servers against the assignment, case by case'
complete -c jam -n "__fish_jam_needs_command" -f -a "check-client" -d 'Grade a time client (the assignment\'s other half): jam plays the server, runs the client once per scenario and judges what it sent, printed and did'
complete -c jam -n "__fish_jam_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jam -n "__fish_jam_using_subcommand time" -s p -l port -d 'The port, when HOST is given without one' -r
complete -c jam -n "__fish_jam_using_subcommand time" -s t -l timeout -d 'Give up on connecting or on a reply after this long (more than 0, at most 1h)' -r
complete -c jam -n "__fish_jam_using_subcommand time" -s n -l count -d 'Ask this many times on one connection (at least 1)' -r
complete -c jam -n "__fish_jam_using_subcommand time" -s i -l interval -d 'Pause between requests with --count' -r
complete -c jam -n "__fish_jam_using_subcommand time" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_using_subcommand time" -l json -d 'Print one JSON object per reply'
complete -c jam -n "__fish_jam_using_subcommand time" -l strict -d 'Accept only the exact `JAM hh:mm:ss` CR LF reply: a variant (a date, no `JAM `, LF only) exits 6 instead of being printed with a note'
complete -c jam -n "__fish_jam_using_subcommand time" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_using_subcommand shell" -s p -l port -d 'The port, when HOST is given without one' -r
complete -c jam -n "__fish_jam_using_subcommand shell" -s t -l timeout -d 'Give up on connecting or on a reply after this long (more than 0, at most 1h)' -r
complete -c jam -n "__fish_jam_using_subcommand shell" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_using_subcommand shell" -l no-history -d 'Keep no history (~/.jam_history). Input that is not a terminal is never recorded'
complete -c jam -n "__fish_jam_using_subcommand shell" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_using_subcommand offset" -s p -l port -d 'The port, when HOST is given without one' -r
complete -c jam -n "__fish_jam_using_subcommand offset" -s t -l timeout -d 'Give up on connecting or on a reply after this long (more than 0, at most 1h)' -r
complete -c jam -n "__fish_jam_using_subcommand offset" -s r -l rounds -d 'Bisection rounds after the first second boundary is found (each waits up to 1 s)' -r
complete -c jam -n "__fish_jam_using_subcommand offset" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_using_subcommand offset" -l json -d 'Print the estimate as JSON'
complete -c jam -n "__fish_jam_using_subcommand offset" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_using_subcommand bench" -s c -l connections -d 'Concurrent connections (workers with --connect-per-request), at least 1' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -s P -l pipeline -d 'Requests in flight per connection, at least 1' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -s n -l requests -d 'Total requests, at least 1 [default: 100000 unless --duration is given]' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -s z -l duration -d 'Run for this long (more than 0) instead of a number of requests' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l rate -d 'Open loop: send this many requests per second in total, whatever the replies do, and measure latency from each request\'s intended send time' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l request -d 'The request line (without CR LF)' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l expect -d 'A good reply starts with this; without it, replies must be time replies (`JAM hh:mm:ss`, or a variant such as a date before the time, counted as not exact)' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l quit -d 'Line sent before closing with --connect-per-request ("" to just close)' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l threads -d 'Load threads, at least 1 [default: one per CPU this process may run on]' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l sources -d 'Connect from this many loopback addresses 127.0.0.1..N, so that many connections do not run out of ephemeral ports [default: 16 for a loopback target with --connect-per-request or more than 1000 connections, else 1]' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -s t -l timeout -d 'Give up on a connection or a reply after this long (more than 0, at most 1h)' -r
complete -c jam -n "__fish_jam_using_subcommand bench" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_using_subcommand bench" -l connect-per-request -d 'Open a new connection for every request: connect, request, reply, quit'
complete -c jam -n "__fish_jam_using_subcommand bench" -l strict -d 'Count only the exact `JAM hh:mm:ss` CR LF as a good reply (what benchmarks use)'
complete -c jam -n "__fish_jam_using_subcommand bench" -l json -d 'Print the summary as JSON'
complete -c jam -n "__fish_jam_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_using_subcommand check" -l targets-file -d 'Read more servers from FILE: one `HOST:PORT [NAME]` per line, `#` comments' -r -F
complete -c jam -n "__fish_jam_using_subcommand check" -l only -d 'Run only these cases (comma-separated ids)' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l skip -d 'Leave out these cases (comma-separated ids)' -r
complete -c jam -n "__fish_jam_using_subcommand check" -s t -l timeout -d 'Longest wait for a reply, a close or a connection (more than 0, at most 1h)' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l max-offset -d 'Largest clock difference time-correct accepts, in seconds' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l clients -d 'Clients of many-clients (1 to 1000)' -r
complete -c jam -n "__fish_jam_using_subcommand check" -s j -l jobs -d 'Servers checked at once' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l junit -d 'Also write JUnit XML to FILE (for CI systems and autograders)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check" -l html -d 'Also write the class board to FILE: one self-contained HTML page (a row per server, a column per case; press a cell for its detail and transcript)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check" -l csv -d 'Also write one CSV row per server to FILE (every case\'s status, must and should passed, score, run time)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check" -l gradescope -d 'Also write Gradescope\'s autograder results.json to FILE (a test per case)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check" -l points -d 'Points per passed case for the score: `must=N,should=M[,info=K][,CASE-ID=P]`, or a file of such lines. Default must=1,should=1,info=0' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l watch -d 'Keep checking every DURATION and serve a live board (see --serve); Ctrl-C ends it' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l serve -d 'Where the live board listens (with --watch). Loopback unless you name another address' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l history -d 'Results kept per server for the live board\'s history strip (1 to 100)' -r
complete -c jam -n "__fish_jam_using_subcommand check" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_using_subcommand check" -l strict -d 'Should-level cases must pass too (exit 1 otherwise)'
complete -c jam -n "__fish_jam_using_subcommand check" -s v -l verbose -d 'Print every case\'s detail and transcript'
complete -c jam -n "__fish_jam_using_subcommand check" -l summary -d 'Print only the table with one row per server (for a class), not each server\'s cases'
complete -c jam -n "__fish_jam_using_subcommand check" -l json -d 'Print one JSON document (and nothing else) to stdout'
complete -c jam -n "__fish_jam_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_using_subcommand check-client" -l listen -d 'Where the server the client dials listens (repeatable) [default: 127.0.0.1:45000 and [::1]:45000]. `{port}` in the command is replaced by the first one\'s port, which is also in JAM_CHECK_PORT' -r
complete -c jam -n "__fish_jam_using_subcommand check-client" -l runs-timeout -d 'Longest one run of the client may take before it is killed (a slow-reply run gets 1.5 s more)' -r
complete -c jam -n "__fish_jam_using_subcommand check-client" -l junit -d 'Also write JUnit XML to FILE (for CI systems and autograders)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check-client" -l html -d 'Also write the class board to FILE: one self-contained HTML page (a row per server, a column per case; press a cell for its detail and transcript)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check-client" -l csv -d 'Also write one CSV row per server to FILE (every case\'s status, must and should passed, score, run time)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check-client" -l gradescope -d 'Also write Gradescope\'s autograder results.json to FILE (a test per case)' -r -F
complete -c jam -n "__fish_jam_using_subcommand check-client" -l color -d 'Colour the output: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set (no-color.org)'
always\t'Always'
never\t'Never'"
complete -c jam -n "__fish_jam_using_subcommand check-client" -l strict -d 'Should-level cases must pass too (exit 1 otherwise)'
complete -c jam -n "__fish_jam_using_subcommand check-client" -s v -l verbose -d 'Print every case\'s detail and transcript'
complete -c jam -n "__fish_jam_using_subcommand check-client" -l json -d 'Print one JSON document (and nothing else) to stdout'
complete -c jam -n "__fish_jam_using_subcommand check-client" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "time" -d 'Ask the server for the time (the default): prints `JAM hh:mm:ss`'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "shell" -d 'Interactive session with line editing and history'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "offset" -d 'Estimate the server clock\'s offset from the local clock, to well under a second'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "bench" -d 'Load-test a server (jamd, or any line protocol with --request/--expect)'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "check" -d 'Grade one or more time servers against the assignment, case by case'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "check-client" -d 'Grade a time client (the assignment\'s other half): jam plays the server, runs the client once per scenario and judges what it sent, printed and did'
complete -c jam -n "__fish_jam_using_subcommand help; and not __fish_seen_subcommand_from time shell offset bench check check-client help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

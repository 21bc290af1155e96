
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'sgw' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'sgw'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'sgw' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run the gateway. Without --config: the built-in demo, both halves on loopback joined by the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has seen the last call end, and prints each half''s counters. SIGHUP re-reads the configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the temporary directory, printed at start) it answers `sgw ctl`')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Show what the gateway would accept, reject and emit for a packet capture')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as a TCP stream to port 1720) through the gateway')
            [CompletionResult]::new('pki', 'pki', [CompletionResultType]::ParameterValue, 'Manage the private PKI of the GW1-GW2 tunnel')
            [CompletionResult]::new('auth', 'auth', [CompletionResultType]::ParameterValue, 'SIP digest credentials of `[auth]`')
            [CompletionResult]::new('check-config', 'check-config', [CompletionResultType]::ParameterValue, 'Check a configuration file: prints "ok" or each error with its key and line')
            [CompletionResult]::new('ctl', 'ctl', [CompletionResultType]::ParameterValue, 'Ask a running gateway (its control socket, `[control] socket`): status, calls, drain, block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket')
            [CompletionResult]::new('cdr', 'cdr', [CompletionResultType]::ParameterValue, 'Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them')
            [CompletionResult]::new('lab', 'lab', [CompletionResultType]::ParameterValue, 'The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and PREFIX-intra joined by PREFIX-router''s nftables policy (the intranet may open only the tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as the intranet''s PBX and registrar, a baresip phone (1001) registered there from PREFIX-phone (a second host on the intranet''s LAN), and a sipp callee on the Internet. `up` prints how to place a call each way; `down` removes everything it made')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;run' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'The TOML configuration (see `sgw check-config --help`); without it, the built-in demo')
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'Which half to run [default: the halves the configuration describes]')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Demo only: GW2''s SIP address, UDP and TCP (port 0 picks a free port)')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'The log on stderr: human lines, or JSON lines (one object per line with `timestamp`, RFC 3339 UTC, `level`, `message`, `target` and the fields `half`, `call`, `source`)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No per-call and per-rejection log lines on stderr (their targets `sgw::call` and `sgw::reject` at level warn: flood summaries and the tunnel''s lines stay)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No per-call and per-rejection log lines on stderr (their targets `sgw::call` and `sgw::reject` at level warn: flood summaries and the tunnel''s lines stay)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail: -v debug (each accepted SIP or H.225.0 message), -vv trace (each Meta message across the tunnel). `RUST_LOG` (e.g. `RUST_LOG=sgw::reject=warn,info`), when set, replaces the level -q and -v give')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail: -v debug (each accepted SIP or H.225.0 message), -vv trace (each Meta message across the tunnel). `RUST_LOG` (e.g. `RUST_LOG=sgw::reject=warn,info`), when set, replaces the level -q and -v give')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;replay' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write what the inside network would receive (GW1''s output) to this pcap file')
            [CompletionResult]::new('--inside-family', '--inside-family', [CompletionResultType]::ParameterName, 'IP family of the inside network (default: the same as each call''s outside leg)')
            [CompletionResult]::new('--inside', '--inside', [CompletionResultType]::ParameterName, 'Signalling protocol GW1 speaks on the inside (default: the same as each call''s outside leg): H.323 sends Q.931/H.225.0 Setup with fastStart over TCP to the next hop''s port 1720')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'A gateway configuration whose [policy] applies: its access rules decide each call (the JSON names the rule on the INVITE or Setup) and its emergency numbers are used. Without it no access rule applies')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document instead of the human summary')
            [CompletionResult]::new('--fail-on-reject', '--fail-on-reject', [CompletionResultType]::ParameterName, 'Exit with status 1 when any message or packet was rejected')
            [CompletionResult]::new('--all-media', '--all-media', [CompletionResultType]::ParameterName, 'List every RTP/RTCP packet in the JSON output, not only rejected ones')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;check' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print a JSON array with one object per file')
            [CompletionResult]::new('--fail-on-reject', '--fail-on-reject', [CompletionResultType]::ParameterName, 'Exit with status 1 when any message was rejected')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;pki' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half''s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;pki;init' {
            [CompletionResult]::new('--gw2-name', '--gw2-name', [CompletionResultType]::ParameterName, 'A DNS name or IP address GW1 uses to reach GW2; repeat for several [default: localhost, 127.0.0.1, ::1]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Overwrite existing files')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;pki;help' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half''s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;pki;help;init' {
            break
        }
        'sgw;pki;help;help' {
            break
        }
        'sgw;auth' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('ha1', 'ha1', [CompletionResultType]::ParameterValue, 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;auth;ha1' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;auth;help' {
            [CompletionResult]::new('ha1', 'ha1', [CompletionResultType]::ParameterValue, 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;auth;help;ha1' {
            break
        }
        'sgw;auth;help;help' {
            break
        }
        'sgw;check-config' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl' {
            [CompletionResult]::new('--socket', '--socket', [CompletionResultType]::ParameterName, 'The gateway''s control socket (`[control] socket`; the demo prints its own)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)')
            [CompletionResult]::new('calls', 'calls', [CompletionResultType]::ParameterValue, 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in')
            [CompletionResult]::new('drain', 'drain', [CompletionResultType]::ParameterValue, 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops')
            [CompletionResult]::new('block', 'block', [CompletionResultType]::ParameterValue, 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2''s outside, until `unblock`')
            [CompletionResult]::new('unblock', 'unblock', [CompletionResultType]::ParameterValue, 'Lift a block of ADDR, manual or automatic')
            [CompletionResult]::new('reload', 'reload', [CompletionResultType]::ParameterValue, 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;ctl;status' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl;calls' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON array')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl;drain' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'At this many seconds, end the calls still up (BYE, Release Complete; cause 16) and stop [default: wait for the last call however long]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl;block' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl;unblock' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl;reload' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;ctl;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)')
            [CompletionResult]::new('calls', 'calls', [CompletionResultType]::ParameterValue, 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in')
            [CompletionResult]::new('drain', 'drain', [CompletionResultType]::ParameterValue, 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops')
            [CompletionResult]::new('block', 'block', [CompletionResultType]::ParameterValue, 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2''s outside, until `unblock`')
            [CompletionResult]::new('unblock', 'unblock', [CompletionResultType]::ParameterValue, 'Lift a block of ADDR, manual or automatic')
            [CompletionResult]::new('reload', 'reload', [CompletionResultType]::ParameterValue, 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;ctl;help;status' {
            break
        }
        'sgw;ctl;help;calls' {
            break
        }
        'sgw;ctl;help;drain' {
            break
        }
        'sgw;ctl;help;block' {
            break
        }
        'sgw;ctl;help;unblock' {
            break
        }
        'sgw;ctl;help;reload' {
            break
        }
        'sgw;ctl;help;help' {
            break
        }
        'sgw;cdr' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check one half''s call record files: the hash chain and the signed checkpoints')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;cdr;verify' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The half''s public record key (`gw2-records.pub` or `gw1-records.pub` from `sgw pki init`): checkpoint signatures are checked with it. Without it only the chain is')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;cdr;help' {
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check one half''s call record files: the hash chain and the signed checkpoints')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;cdr;help;verify' {
            break
        }
        'sgw;cdr;help;help' {
            break
        }
        'sgw;lab' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router''s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway''s tunnel (asked on its control socket). Exit status 0 when all of it is up')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;lab;up' {
            [CompletionResult]::new('--prefix', '--prefix', [CompletionResultType]::ParameterName, 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]')
            [CompletionResult]::new('--net-only', '--net-only', [CompletionResultType]::ParameterName, 'Only the namespaces, veths, routes and the router''s firewall: no gateway, PBX or phone (for tests that run their own)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;lab;down' {
            [CompletionResult]::new('--prefix', '--prefix', [CompletionResultType]::ParameterName, 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;lab;status' {
            [CompletionResult]::new('--prefix', '--prefix', [CompletionResultType]::ParameterName, 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'sgw;lab;help' {
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router''s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway''s tunnel (asked on its control socket). Exit status 0 when all of it is up')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;lab;help;up' {
            break
        }
        'sgw;lab;help;down' {
            break
        }
        'sgw;lab;help;status' {
            break
        }
        'sgw;lab;help;help' {
            break
        }
        'sgw;help' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run the gateway. Without --config: the built-in demo, both halves on loopback joined by the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has seen the last call end, and prints each half''s counters. SIGHUP re-reads the configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the temporary directory, printed at start) it answers `sgw ctl`')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Show what the gateway would accept, reject and emit for a packet capture')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as a TCP stream to port 1720) through the gateway')
            [CompletionResult]::new('pki', 'pki', [CompletionResultType]::ParameterValue, 'Manage the private PKI of the GW1-GW2 tunnel')
            [CompletionResult]::new('auth', 'auth', [CompletionResultType]::ParameterValue, 'SIP digest credentials of `[auth]`')
            [CompletionResult]::new('check-config', 'check-config', [CompletionResultType]::ParameterValue, 'Check a configuration file: prints "ok" or each error with its key and line')
            [CompletionResult]::new('ctl', 'ctl', [CompletionResultType]::ParameterValue, 'Ask a running gateway (its control socket, `[control] socket`): status, calls, drain, block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket')
            [CompletionResult]::new('cdr', 'cdr', [CompletionResultType]::ParameterValue, 'Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them')
            [CompletionResult]::new('lab', 'lab', [CompletionResultType]::ParameterValue, 'The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and PREFIX-intra joined by PREFIX-router''s nftables policy (the intranet may open only the tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as the intranet''s PBX and registrar, a baresip phone (1001) registered there from PREFIX-phone (a second host on the intranet''s LAN), and a sipp callee on the Internet. `up` prints how to place a call each way; `down` removes everything it made')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'sgw;help;run' {
            break
        }
        'sgw;help;replay' {
            break
        }
        'sgw;help;check' {
            break
        }
        'sgw;help;pki' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half''s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)')
            break
        }
        'sgw;help;pki;init' {
            break
        }
        'sgw;help;auth' {
            [CompletionResult]::new('ha1', 'ha1', [CompletionResultType]::ParameterValue, 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere')
            break
        }
        'sgw;help;auth;ha1' {
            break
        }
        'sgw;help;check-config' {
            break
        }
        'sgw;help;ctl' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)')
            [CompletionResult]::new('calls', 'calls', [CompletionResultType]::ParameterValue, 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in')
            [CompletionResult]::new('drain', 'drain', [CompletionResultType]::ParameterValue, 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops')
            [CompletionResult]::new('block', 'block', [CompletionResultType]::ParameterValue, 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2''s outside, until `unblock`')
            [CompletionResult]::new('unblock', 'unblock', [CompletionResultType]::ParameterValue, 'Lift a block of ADDR, manual or automatic')
            [CompletionResult]::new('reload', 'reload', [CompletionResultType]::ParameterValue, 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart')
            break
        }
        'sgw;help;ctl;status' {
            break
        }
        'sgw;help;ctl;calls' {
            break
        }
        'sgw;help;ctl;drain' {
            break
        }
        'sgw;help;ctl;block' {
            break
        }
        'sgw;help;ctl;unblock' {
            break
        }
        'sgw;help;ctl;reload' {
            break
        }
        'sgw;help;cdr' {
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check one half''s call record files: the hash chain and the signed checkpoints')
            break
        }
        'sgw;help;cdr;verify' {
            break
        }
        'sgw;help;lab' {
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router''s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway''s tunnel (asked on its control socket). Exit status 0 when all of it is up')
            break
        }
        'sgw;help;lab;up' {
            break
        }
        'sgw;help;lab;down' {
            break
        }
        'sgw;help;lab;status' {
            break
        }
        'sgw;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}

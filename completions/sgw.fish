# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sgw_global_optspecs
    string join \n h/help V/version
end

function __fish_sgw_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sgw_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sgw_using_subcommand
    set -l cmd (__fish_sgw_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sgw -n "__fish_sgw_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sgw -n "__fish_sgw_needs_command" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "run" -d 'Run the gateway. Without --config: the built-in demo, both halves on loopback joined by the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has seen the last call end, and prints each half\'s counters. SIGHUP re-reads the configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the temporary directory, printed at start) it answers `sgw ctl`'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "replay" -d 'Show what the gateway would accept, reject and emit for a packet capture'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "check" -d 'Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as a TCP stream to port 1720) through the gateway'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "pki" -d 'Manage the private PKI of the GW1-GW2 tunnel'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "auth" -d 'SIP digest credentials of `[auth]`'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "check-config" -d 'Check a configuration file: prints "ok" or each error with its key and line'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "ctl" -d 'Ask a running gateway (its control socket, `[control] socket`): status, calls, drain, block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "cdr" -d 'Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "lab" -d 'The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and PREFIX-intra joined by PREFIX-router\'s nftables policy (the intranet may open only the tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as the intranet\'s PBX and registrar, a baresip phone (1001) registered there from PREFIX-phone (a second host on the intranet\'s LAN), and a sipp callee on the Internet. `up` prints how to place a call each way; `down` removes everything it made'
complete -c sgw -n "__fish_sgw_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand run" -l config -d 'The TOML configuration (see `sgw check-config --help`); without it, the built-in demo' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand run" -l role -d 'Which half to run [default: the halves the configuration describes]' -r -f -a "gw1\t'The relay gateway in the intranet: opens the tunnel, speaks SIP to the inside'
gw2\t'The termination gateway in the DMZ: terminates outside SIP, accepts the tunnel'
both\t'Both halves in one process, joined by the real tunnel'"
complete -c sgw -n "__fish_sgw_using_subcommand run" -l listen -d 'Demo only: GW2\'s SIP address, UDP and TCP (port 0 picks a free port)' -r
complete -c sgw -n "__fish_sgw_using_subcommand run" -l log-format -d 'The log on stderr: human lines, or JSON lines (one object per line with `timestamp`, RFC 3339 UTC, `level`, `message`, `target` and the fields `half`, `call`, `source`)' -r -f -a "human\t'`TIMESTAMP LEVEL sgw HALF call=ID: message key=value`'
json\t'One JSON object per line'"
complete -c sgw -n "__fish_sgw_using_subcommand run" -s q -l quiet -d 'No per-call and per-rejection log lines on stderr (their targets `sgw::call` and `sgw::reject` at level warn: flood summaries and the tunnel\'s lines stay)'
complete -c sgw -n "__fish_sgw_using_subcommand run" -s v -l verbose -d 'More log detail: -v debug (each accepted SIP or H.225.0 message), -vv trace (each Meta message across the tunnel). `RUST_LOG` (e.g. `RUST_LOG=sgw::reject=warn,info`), when set, replaces the level -q and -v give'
complete -c sgw -n "__fish_sgw_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sgw -n "__fish_sgw_using_subcommand run" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l out -d 'Write what the inside network would receive (GW1\'s output) to this pcap file' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l inside-family -d 'IP family of the inside network (default: the same as each call\'s outside leg)' -r -f -a "ipv4\t''
ipv6\t''"
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l inside -d 'Signalling protocol GW1 speaks on the inside (default: the same as each call\'s outside leg): H.323 sends Q.931/H.225.0 Setup with fastStart over TCP to the next hop\'s port 1720' -r -f -a "sip\t''
h323\t''"
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l config -d 'A gateway configuration whose [policy] applies: its access rules decide each call (the JSON names the rule on the INVITE or Setup) and its emergency numbers are used. Without it no access rule applies' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l json -d 'Print one JSON document instead of the human summary'
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l fail-on-reject -d 'Exit with status 1 when any message or packet was rejected'
complete -c sgw -n "__fish_sgw_using_subcommand replay" -l all-media -d 'List every RTP/RTCP packet in the JSON output, not only rejected ones'
complete -c sgw -n "__fish_sgw_using_subcommand replay" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand replay" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand check" -l json -d 'Print a JSON array with one object per file'
complete -c sgw -n "__fish_sgw_using_subcommand check" -l fail-on-reject -d 'Exit with status 1 when any message was rejected'
complete -c sgw -n "__fish_sgw_using_subcommand check" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand check" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and not __fish_seen_subcommand_from init help" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and not __fish_seen_subcommand_from init help" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and not __fish_seen_subcommand_from init help" -f -a "init" -d 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half\'s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and not __fish_seen_subcommand_from init help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and __fish_seen_subcommand_from init" -l gw2-name -d 'A DNS name or IP address GW1 uses to reach GW2; repeat for several [default: localhost, 127.0.0.1, ::1]' -r
complete -c sgw -n "__fish_sgw_using_subcommand pki; and __fish_seen_subcommand_from init" -l force -d 'Overwrite existing files'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and __fish_seen_subcommand_from init" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half\'s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)'
complete -c sgw -n "__fish_sgw_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and not __fish_seen_subcommand_from ha1 help" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and not __fish_seen_subcommand_from ha1 help" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and not __fish_seen_subcommand_from ha1 help" -f -a "ha1" -d 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and not __fish_seen_subcommand_from ha1 help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and __fish_seen_subcommand_from ha1" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and __fish_seen_subcommand_from ha1" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "ha1" -d 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere'
complete -c sgw -n "__fish_sgw_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sgw -n "__fish_sgw_using_subcommand check-config" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -l socket -d 'The gateway\'s control socket (`[control] socket`; the demo prints its own)' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "status" -d 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "calls" -d 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "drain" -d 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "block" -d 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2\'s outside, until `unblock`'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "unblock" -d 'Lift a block of ADDR, manual or automatic'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "reload" -d 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and not __fish_seen_subcommand_from status calls drain block unblock reload help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from status" -l json -d 'One JSON document'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from calls" -l json -d 'One JSON array'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from calls" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from calls" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from drain" -l timeout -d 'At this many seconds, end the calls still up (BYE, Release Complete; cause 16) and stop [default: wait for the last call however long]' -r
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from drain" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from drain" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from block" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from block" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from unblock" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from unblock" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "status" -d 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "calls" -d 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "drain" -d 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "block" -d 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2\'s outside, until `unblock`'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "unblock" -d 'Lift a block of ADDR, manual or automatic'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "reload" -d 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart'
complete -c sgw -n "__fish_sgw_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and not __fish_seen_subcommand_from verify help" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and not __fish_seen_subcommand_from verify help" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and not __fish_seen_subcommand_from verify help" -f -a "verify" -d 'Check one half\'s call record files: the hash chain and the signed checkpoints'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and not __fish_seen_subcommand_from verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and __fish_seen_subcommand_from verify" -l key -d 'The half\'s public record key (`gw2-records.pub` or `gw1-records.pub` from `sgw pki init`): checkpoint signatures are checked with it. Without it only the chain is' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and __fish_seen_subcommand_from verify" -l json -d 'Print one JSON document'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check one half\'s call record files: the hash chain and the signed checkpoints'
complete -c sgw -n "__fish_sgw_using_subcommand cdr; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and not __fish_seen_subcommand_from up down status help" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and not __fish_seen_subcommand_from up down status help" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and not __fish_seen_subcommand_from up down status help" -f -a "up" -d 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and not __fish_seen_subcommand_from up down status help" -f -a "down" -d 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router\'s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and not __fish_seen_subcommand_from up down status help" -f -a "status" -d 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway\'s tunnel (asked on its control socket). Exit status 0 when all of it is up'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and not __fish_seen_subcommand_from up down status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from up" -l prefix -d 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist' -r
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from up" -l dir -d 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from up" -l net-only -d 'Only the namespaces, veths, routes and the router\'s firewall: no gateway, PBX or phone (for tests that run their own)'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from down" -l prefix -d 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist' -r
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from down" -l dir -d 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from down" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from down" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from status" -l prefix -d 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist' -r
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from status" -l dir -d 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]' -r -F
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "up" -d 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "down" -d 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router\'s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway\'s tunnel (asked on its control socket). Exit status 0 when all of it is up'
complete -c sgw -n "__fish_sgw_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "run" -d 'Run the gateway. Without --config: the built-in demo, both halves on loopback joined by the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has seen the last call end, and prints each half\'s counters. SIGHUP re-reads the configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the temporary directory, printed at start) it answers `sgw ctl`'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "replay" -d 'Show what the gateway would accept, reject and emit for a packet capture'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "check" -d 'Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as a TCP stream to port 1720) through the gateway'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "pki" -d 'Manage the private PKI of the GW1-GW2 tunnel'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "auth" -d 'SIP digest credentials of `[auth]`'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "check-config" -d 'Check a configuration file: prints "ok" or each error with its key and line'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "ctl" -d 'Ask a running gateway (its control socket, `[control] socket`): status, calls, drain, block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "cdr" -d 'Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "lab" -d 'The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and PREFIX-intra joined by PREFIX-router\'s nftables policy (the intranet may open only the tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as the intranet\'s PBX and registrar, a baresip phone (1001) registered there from PREFIX-phone (a second host on the intranet\'s LAN), and a sipp callee on the Internet. `up` prints how to place a call each way; `down` removes everything it made'
complete -c sgw -n "__fish_sgw_using_subcommand help; and not __fish_seen_subcommand_from run replay check pki auth check-config ctl cdr lab help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "init" -d 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half\'s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "ha1" -d 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "status" -d 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "calls" -d 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "drain" -d 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "block" -d 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2\'s outside, until `unblock`'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "unblock" -d 'Lift a block of ADDR, manual or automatic'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "reload" -d 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from cdr" -f -a "verify" -d 'Check one half\'s call record files: the hash chain and the signed checkpoints'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "up" -d 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "down" -d 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router\'s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed'
complete -c sgw -n "__fish_sgw_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "status" -d 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway\'s tunnel (asked on its control socket). Exit status 0 when all of it is up'


use builtin;
use str;

set edit:completion:arg-completer[sgw] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'sgw'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'sgw'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Run the gateway. Without --config: the built-in demo, both halves on loopback joined by the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has seen the last call end, and prints each half''s counters. SIGHUP re-reads the configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the temporary directory, printed at start) it answers `sgw ctl`'
            cand replay 'Show what the gateway would accept, reject and emit for a packet capture'
            cand check 'Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as a TCP stream to port 1720) through the gateway'
            cand pki 'Manage the private PKI of the GW1-GW2 tunnel'
            cand auth 'SIP digest credentials of `[auth]`'
            cand check-config 'Check a configuration file: prints "ok" or each error with its key and line'
            cand ctl 'Ask a running gateway (its control socket, `[control] socket`): status, calls, drain, block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket'
            cand cdr 'Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them'
            cand lab 'The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and PREFIX-intra joined by PREFIX-router''s nftables policy (the intranet may open only the tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as the intranet''s PBX and registrar, a baresip phone (1001) registered there from PREFIX-phone (a second host on the intranet''s LAN), and a sipp callee on the Internet. `up` prints how to place a call each way; `down` removes everything it made'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;run'= {
            cand --config 'The TOML configuration (see `sgw check-config --help`); without it, the built-in demo'
            cand --role 'Which half to run [default: the halves the configuration describes]'
            cand --listen 'Demo only: GW2''s SIP address, UDP and TCP (port 0 picks a free port)'
            cand --log-format 'The log on stderr: human lines, or JSON lines (one object per line with `timestamp`, RFC 3339 UTC, `level`, `message`, `target` and the fields `half`, `call`, `source`)'
            cand -q 'No per-call and per-rejection log lines on stderr (their targets `sgw::call` and `sgw::reject` at level warn: flood summaries and the tunnel''s lines stay)'
            cand --quiet 'No per-call and per-rejection log lines on stderr (their targets `sgw::call` and `sgw::reject` at level warn: flood summaries and the tunnel''s lines stay)'
            cand -v 'More log detail: -v debug (each accepted SIP or H.225.0 message), -vv trace (each Meta message across the tunnel). `RUST_LOG` (e.g. `RUST_LOG=sgw::reject=warn,info`), when set, replaces the level -q and -v give'
            cand --verbose 'More log detail: -v debug (each accepted SIP or H.225.0 message), -vv trace (each Meta message across the tunnel). `RUST_LOG` (e.g. `RUST_LOG=sgw::reject=warn,info`), when set, replaces the level -q and -v give'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;replay'= {
            cand --out 'Write what the inside network would receive (GW1''s output) to this pcap file'
            cand --inside-family 'IP family of the inside network (default: the same as each call''s outside leg)'
            cand --inside 'Signalling protocol GW1 speaks on the inside (default: the same as each call''s outside leg): H.323 sends Q.931/H.225.0 Setup with fastStart over TCP to the next hop''s port 1720'
            cand --config 'A gateway configuration whose [policy] applies: its access rules decide each call (the JSON names the rule on the INVITE or Setup) and its emergency numbers are used. Without it no access rule applies'
            cand --json 'Print one JSON document instead of the human summary'
            cand --fail-on-reject 'Exit with status 1 when any message or packet was rejected'
            cand --all-media 'List every RTP/RTCP packet in the JSON output, not only rejected ones'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;check'= {
            cand --json 'Print a JSON array with one object per file'
            cand --fail-on-reject 'Exit with status 1 when any message was rejected'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;pki'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand init 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half''s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;pki;init'= {
            cand --gw2-name 'A DNS name or IP address GW1 uses to reach GW2; repeat for several [default: localhost, 127.0.0.1, ::1]'
            cand --force 'Overwrite existing files'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;pki;help'= {
            cand init 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half''s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;pki;help;init'= {
        }
        &'sgw;pki;help;help'= {
        }
        &'sgw;auth'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand ha1 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;auth;ha1'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;auth;help'= {
            cand ha1 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;auth;help;ha1'= {
        }
        &'sgw;auth;help;help'= {
        }
        &'sgw;check-config'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl'= {
            cand --socket 'The gateway''s control socket (`[control] socket`; the demo prints its own)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand status 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)'
            cand calls 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in'
            cand drain 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops'
            cand block 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2''s outside, until `unblock`'
            cand unblock 'Lift a block of ADDR, manual or automatic'
            cand reload 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;ctl;status'= {
            cand --json 'One JSON document'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl;calls'= {
            cand --json 'One JSON array'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl;drain'= {
            cand --timeout 'At this many seconds, end the calls still up (BYE, Release Complete; cause 16) and stop [default: wait for the last call however long]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl;block'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl;unblock'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl;reload'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;ctl;help'= {
            cand status 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)'
            cand calls 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in'
            cand drain 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops'
            cand block 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2''s outside, until `unblock`'
            cand unblock 'Lift a block of ADDR, manual or automatic'
            cand reload 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;ctl;help;status'= {
        }
        &'sgw;ctl;help;calls'= {
        }
        &'sgw;ctl;help;drain'= {
        }
        &'sgw;ctl;help;block'= {
        }
        &'sgw;ctl;help;unblock'= {
        }
        &'sgw;ctl;help;reload'= {
        }
        &'sgw;ctl;help;help'= {
        }
        &'sgw;cdr'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand verify 'Check one half''s call record files: the hash chain and the signed checkpoints'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;cdr;verify'= {
            cand --key 'The half''s public record key (`gw2-records.pub` or `gw1-records.pub` from `sgw pki init`): checkpoint signatures are checked with it. Without it only the chain is'
            cand --json 'Print one JSON document'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;cdr;help'= {
            cand verify 'Check one half''s call record files: the hash chain and the signed checkpoints'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;cdr;help;verify'= {
        }
        &'sgw;cdr;help;help'= {
        }
        &'sgw;lab'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand up 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made'
            cand down 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router''s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed'
            cand status 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway''s tunnel (asked on its control socket). Exit status 0 when all of it is up'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;lab;up'= {
            cand --prefix 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist'
            cand --dir 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]'
            cand --net-only 'Only the namespaces, veths, routes and the router''s firewall: no gateway, PBX or phone (for tests that run their own)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;lab;down'= {
            cand --prefix 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist'
            cand --dir 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;lab;status'= {
            cand --prefix 'The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and PREFIX-phone: several labs with different prefixes coexist'
            cand --dir 'The state directory: configurations, PKI, logs, pid files, control sockets [default: /run/sgw-lab/PREFIX]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'sgw;lab;help'= {
            cand up 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made'
            cand down 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router''s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed'
            cand status 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway''s tunnel (asked on its control socket). Exit status 0 when all of it is up'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;lab;help;up'= {
        }
        &'sgw;lab;help;down'= {
        }
        &'sgw;lab;help;status'= {
        }
        &'sgw;lab;help;help'= {
        }
        &'sgw;help'= {
            cand run 'Run the gateway. Without --config: the built-in demo, both halves on loopback joined by the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has seen the last call end, and prints each half''s counters. SIGHUP re-reads the configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the temporary directory, printed at start) it answers `sgw ctl`'
            cand replay 'Show what the gateway would accept, reject and emit for a packet capture'
            cand check 'Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as a TCP stream to port 1720) through the gateway'
            cand pki 'Manage the private PKI of the GW1-GW2 tunnel'
            cand auth 'SIP digest credentials of `[auth]`'
            cand check-config 'Check a configuration file: prints "ok" or each error with its key and line'
            cand ctl 'Ask a running gateway (its control socket, `[control] socket`): status, calls, drain, block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket'
            cand cdr 'Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them'
            cand lab 'The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and PREFIX-intra joined by PREFIX-router''s nftables policy (the intranet may open only the tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as the intranet''s PBX and registrar, a baresip phone (1001) registered there from PREFIX-phone (a second host on the intranet''s LAN), and a sipp callee on the Internet. `up` prints how to place a call each way; `down` removes everything it made'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'sgw;help;run'= {
        }
        &'sgw;help;replay'= {
        }
        &'sgw;help;check'= {
        }
        &'sgw;help;pki'= {
            cand init 'Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem, ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half''s Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8, mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex)'
        }
        &'sgw;help;pki;init'= {
        }
        &'sgw;help;auth'= {
            cand ha1 'Print the line of the `[auth] credentials` file for USER in REALM: `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the first line of standard input; it is not stored anywhere'
        }
        &'sgw;help;auth;ha1'= {
        }
        &'sgw;help;check-config'= {
        }
        &'sgw;help;ctl'= {
            cand status 'Each half: tunnel up or down, calls up, draining or not, the blocked sources and the trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps none)'
            cand calls 'One line per call up and half: reference, direction, protocol, calling and called numbers, age, answered or ringing, source, the access rule that let it in'
            cand drain 'Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the calls left as they end and returns when the gateway stops'
            cand block 'Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2''s outside, until `unblock`'
            cand unblock 'Lift a block of ADDR, manual or automatic'
            cand reload 'Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes nothing; other changed keys are named and need a restart'
        }
        &'sgw;help;ctl;status'= {
        }
        &'sgw;help;ctl;calls'= {
        }
        &'sgw;help;ctl;drain'= {
        }
        &'sgw;help;ctl;block'= {
        }
        &'sgw;help;ctl;unblock'= {
        }
        &'sgw;help;ctl;reload'= {
        }
        &'sgw;help;cdr'= {
            cand verify 'Check one half''s call record files: the hash chain and the signed checkpoints'
        }
        &'sgw;help;cdr;verify'= {
        }
        &'sgw;help;lab'= {
            cand up 'Build the lab and start its processes (in the background, logging into the state directory); print the addresses and the sipp command lines that call each way. Needs root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes what it made'
            cand down 'Stop every process the lab started and any process left in its namespaces, delete the namespaces (their veths and the router''s nftables table with them) and the state directory. Idempotent; works after a partial `up`. Exit status 1 when something could not be removed'
            cand status 'Show what is there: namespaces, the firewall and its counters, each process (running or not) and each gateway''s tunnel (asked on its control socket). Exit status 0 when all of it is up'
        }
        &'sgw;help;lab;up'= {
        }
        &'sgw;help;lab;down'= {
        }
        &'sgw;help;lab;status'= {
        }
        &'sgw;help;help'= {
        }
    ]
    $completions[$command]
}

#!/usr/bin/env bash
# Builds and tears down the three-zone lab of tests/three_zones.rs.
#
#   lab.sh up PREFIX      namespaces PREFIX-{router,inet,dmz,intra}, veths, addresses, routes,
#                         forwarding, and tests/netns/router.nft in PREFIX-router
#   lab.sh down PREFIX    deletes the namespaces (and with them the veths and the ruleset)
#   lab.sh probe          exits 0 when network namespaces can be made here
#
# Topology (every zone's side of its veth is eth0; the router's are r-inet, r-dmz, r-intra):
#
#   inet  198.51.100.10/24, fd00:5357::10/64 --- r-inet  198.51.100.1, fd00:5357::1
#   dmz   203.0.113.10/24,  fd00:5357:1::10/64 - r-dmz   203.0.113.1,  fd00:5357:1::1
#   intra fd00:5357:2::10/64 (GW1), ::20 (PBX) - r-intra fd00:5357:2::1
#
# inet's IPv6 address is there only so that a probe from the Internet toward the intranet has a
# route and reaches the firewall at all; the caller uses IPv4. intra has no IPv4 address.
#
# The firewall's ports come from the environment (the test owns them): LAB_TUNNEL_PORT,
# LAB_SIP_PORT, LAB_RTP_MIN, LAB_RTP_MAX.
set -euo pipefail

ZONES="router inet dmz intra"

up() {
	local p=$1 z
	for z in $ZONES; do
		ip netns add "$p-$z"
		ip -n "$p-$z" link set lo up
		# No duplicate address detection on the veths made below, link-local addresses
		# included: while a router's link-local address is tentative it sends no neighbour
		# solicitation, so the first forwarded packets wait (or a SYN is retransmitted).
		ip netns exec "$p-$z" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
	done
	for z in inet dmz intra; do
		ip link add name "r-$z" netns "$p-router" type veth peer name eth0 netns "$p-$z"
		ip -n "$p-router" link set "r-$z" up
		ip -n "$p-$z" link set eth0 up
	done
	ip -n "$p-router" addr add 198.51.100.1/24 dev r-inet
	ip -n "$p-router" addr add fd00:5357::1/64 dev r-inet nodad
	ip -n "$p-router" addr add 203.0.113.1/24 dev r-dmz
	ip -n "$p-router" addr add fd00:5357:1::1/64 dev r-dmz nodad
	ip -n "$p-router" addr add fd00:5357:2::1/64 dev r-intra nodad

	ip -n "$p-inet" addr add 198.51.100.10/24 dev eth0
	ip -n "$p-inet" addr add fd00:5357::10/64 dev eth0 nodad
	ip -n "$p-inet" route add default via 198.51.100.1
	ip -n "$p-inet" -6 route add default via fd00:5357::1

	ip -n "$p-dmz" addr add 203.0.113.10/24 dev eth0
	ip -n "$p-dmz" addr add fd00:5357:1::10/64 dev eth0 nodad
	ip -n "$p-dmz" route add default via 203.0.113.1
	ip -n "$p-dmz" -6 route add default via fd00:5357:1::1

	ip -n "$p-intra" addr add fd00:5357:2::10/64 dev eth0 nodad
	# The PBX's address is deprecated (preferred_lft 0) so that it is never picked as a source
	# address: GW1's tunnel connections leave from GW1's address, which the firewall names.
	ip -n "$p-intra" addr add fd00:5357:2::20/64 dev eth0 nodad preferred_lft 0
	ip -n "$p-intra" -6 route add default via fd00:5357:2::1

	# Wait until every veth end is up with its queue activated and no address is tentative:
	# otherwise the first packets through the router are delayed or lost, the tunnel's first
	# SYN is retransmitted, and the firewall counts it twice.
	local i ready
	for i in $(seq 100); do
		ready=1
		for z in inet dmz intra; do
			if ip -n "$p-router" link show dev "r-$z" | grep -qE 'qdisc noop|NO-CARRIER|state DOWN' ||
				ip -n "$p-$z" link show dev eth0 | grep -qE 'qdisc noop|NO-CARRIER|state DOWN' ||
				[ -n "$(ip -n "$p-$z" -6 addr show tentative)" ] ||
				[ -n "$(ip -n "$p-router" -6 addr show tentative)" ]; then
				ready=0
			fi
		done
		[ "$ready" = 1 ] && break
		sleep 0.05
	done
	[ "$ready" = 1 ] || { echo "lab.sh: veths not up after 5 s" >&2; exit 1; }

	ip netns exec "$p-router" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	ip netns exec "$p-router" nft \
		-D gw2_v4=203.0.113.10 -D gw2_v6=fd00:5357:1::10 -D gw1_v6=fd00:5357:2::10 \
		-D tunnel_port="$LAB_TUNNEL_PORT" -D sip_port="$LAB_SIP_PORT" \
		-D rtp_min="$LAB_RTP_MIN" -D rtp_max="$LAB_RTP_MAX" \
		-f "$(dirname "$0")/router.nft"
}

down() {
	local p=$1 z
	for z in $ZONES; do
		ip netns del "$p-$z" 2>/dev/null || true
	done
}

case "${1:-}" in
up) up "$2" ;;
down) down "$2" ;;
probe)
	p="sgw-probe-$$"
	ip netns add "$p"
	ip netns del "$p"
	;;
*)
	echo "usage: $0 up PREFIX | down PREFIX | probe" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# pfw demo: a sandbox on your own machine that shows pfw blocking live
# traffic, without touching your firewall.
#
# It makes two network namespaces joined by a veth pair:
#
#   pfw-demo-client  10.203.0.2 and 10.203.0.3  ---veth---  10.203.0.1  pfw-demo-fw
#
# runs pfwd inside pfw-demo-fw with a demo config (block telnet, blacklist
# 10.203.0.3, no threat feeds: nothing leaves this machine), sends traffic
# from the client, and shows what pfw allowed and blocked. pfwd's nftables
# table lives in pfw-demo-fw's own netfilter: the host's rules are never
# read or changed. Everything is removed on exit, even on Ctrl-C.
#
# Usage: sudo dist/demo.sh [BINDIR]   (BINDIR holds pfwd and fwctl; default ./bin)
# `sudo make demo` builds first and runs this.
set -euo pipefail

BIN=${1:-"$(cd "$(dirname "$0")/.." && pwd)/bin"}
PFWD=$BIN/pfwd
FWCTL=$BIN/fwctl
CLIENT=pfw-demo-client
FW=pfw-demo-fw
FW_IP=10.203.0.1
GOOD_IP=10.203.0.2
BAD_IP=10.203.0.3
WORK=""
PFWD_PID=""
SERVER_PID=""
SURPRISES=0

if [ -t 1 ]; then BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' OFF=$'\e[0m'; else BOLD="" GREEN="" RED="" OFF=""; fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$OFF"; }
# The command is shown quoted as a shell reads it, so it can be pasted.
run() { printf '%s$' "$BOLD"; printf ' %q' "$@"; printf '%s\n' "$OFF"; "$@"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root to create network namespaces and run pfwd; try: sudo make demo"
for tool in ip timeout; do
	command -v "$tool" >/dev/null || die "$tool is not installed (iproute2, coreutils)"
done
[ -x "$PFWD" ] && [ -x "$FWCTL" ] || die "no pfwd/fwctl in $BIN; run make build first (or: sudo make demo)"

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$PFWD_PID" ] && kill -0 "$PFWD_PID" 2>/dev/null; then
		say "Stopping pfwd (it removes its table)"
		kill -TERM "$PFWD_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$PFWD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$PFWD_PID" 2>/dev/null || true
		wait "$PFWD_PID" 2>/dev/null || true
	fi
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	ip netns del "$CLIENT" 2>/dev/null || true
	ip netns del "$FW" 2>/dev/null || true
	[ -n "$WORK" ] && rm -rf "$WORK"
	echo "Cleaned up: namespaces $CLIENT and $FW removed, nothing else was touched."
	exit "$rc"
}

# Namespaces left by a demo that was killed outright are ours to remove;
# ones with processes in them belong to a demo still running.
for ns in "$CLIENT" "$FW"; do
	if ip netns list | grep -qw "^$ns"; then
		[ -z "$(ip netns pids "$ns" 2>/dev/null)" ] || die "namespace $ns is in use: is another demo running?"
		ip netns del "$ns"
	fi
done
trap cleanup EXIT
trap 'exit 130' INT TERM
WORK=$(mktemp -d /tmp/pfw-demo.XXXXXX)

say "Two network namespaces joined by a veth pair (your own network is not involved)"
ip netns add "$CLIENT"
ip netns add "$FW"
# Both ends are created inside the namespaces: no interface ever appears on the host.
ip link add pfwdemo0 netns "$CLIENT" type veth peer name pfwdemo1 netns "$FW"
ip -n "$CLIENT" addr add "$GOOD_IP/24" dev pfwdemo0
ip -n "$CLIENT" addr add "$BAD_IP/24" dev pfwdemo0
ip -n "$FW" addr add "$FW_IP/24" dev pfwdemo1
for ns in "$CLIENT" "$FW"; do
	ip -n "$ns" link set lo up
done
ip -n "$CLIENT" link set pfwdemo0 up
ip -n "$FW" link set pfwdemo1 up
echo "$CLIENT: $GOOD_IP (a good client) and $BAD_IP (one we will blacklist)"
echo "$FW: $FW_IP, where pfwd will run"

# A small service on ports 23 (telnet) and 80 (web) in the firewall
# namespace. Without python3 nothing listens, and "connection refused" is
# the proof that a packet got through.
if command -v python3 >/dev/null; then
	ip netns exec "$FW" python3 -c '
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    while True:
        c, _ = s.accept()
        c.sendall(b"hello from pfw-demo-fw port %d\n" % port)
        c.close()
for p in (23, 80):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
' &
	SERVER_PID=$!
	sleep 0.3
fi

# tcp_from SRC PORT: connects from the client namespace, with SRC as the
# source address, and prints what happened. Exit 0: the packet reached the
# firewall host (answered or refused); 1: it vanished (dropped).
tcp_from() {
	local src=$1 port=$2 out rc
	ip -n "$CLIENT" route replace "$FW_IP/32" dev pfwdemo0 src "$src"
	set +e
	out=$(ip netns exec "$CLIENT" timeout 2 bash -c "exec 3<>/dev/tcp/$FW_IP/$port && head -n1 <&3" 2>&1)
	rc=$?
	set -e
	ip -n "$CLIENT" route del "$FW_IP/32" 2>/dev/null || true
	case $rc in
	0) echo "answered: $out"; return 0 ;;
	124) echo "no answer within 2 s: dropped"; return 1 ;;
	*) case $out in *refused*) echo "connection refused: the packet reached the host"; return 0 ;; esac
		echo "failed: $out"; return 1 ;;
	esac
}

ping_from() {
	if ip netns exec "$CLIENT" ping -c 1 -W 1 -I "$1" "$FW_IP" >/dev/null 2>&1; then
		echo "reply received"; return 0
	fi
	echo "no reply: dropped"; return 1
}

# expect WANT DESCRIPTION COMMAND...: runs a probe and says whether pfw
# did what the config says it should.
expect() {
	local want=$1 what=$2 got out
	shift 2
	if out=$("$@"); then got=allowed; else got=blocked; fi
	if [ "$got" = "$want" ]; then
		printf '  %-46s %s%-8s%s %s\n' "$what" "$GREEN" "$got" "$OFF" "($out)"
	else
		printf '  %-46s %s%-8s%s %s (expected %s)\n' "$what" "$RED" "$got" "$OFF" "$out" "$want"
		SURPRISES=$((SURPRISES + 1))
	fi
}

say "Before pfw: everything gets through"
expect allowed "tcp $GOOD_IP -> $FW_IP:23 (telnet)" tcp_from "$GOOD_IP" 23
expect allowed "ping $BAD_IP -> $FW_IP" ping_from "$BAD_IP"

say "The demo config (no threat feeds: the demo makes no Internet traffic)"
cat >"$WORK/firewall_rules.json" <<EOF
{
  "default_policy": "allow",
  "rules": [
    {"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [23]}
  ],
  "whitelist_ips": ["127.0.0.1", "::1"],
  "blacklist_ips": ["$BAD_IP"],
  "rate_limit": {"max_connections": 100, "window_seconds": 10},
  "allowed_sample_rate": 1,
  "threat_feeds": []
}
EOF
cat "$WORK/firewall_rules.json"
FWCTL_ARGS=(--config "$WORK/firewall_rules.json" --db "$WORK/firewall.db" --socket "$WORK/pfwd.sock")

say "Starting pfwd in $FW (its log: $WORK/firewall.log)"
echo "$ ip netns exec $FW pfwd --config $WORK/firewall_rules.json --db $WORK/firewall.db --socket $WORK/pfwd.sock --log-file $WORK/firewall.log"
ip netns exec "$FW" "$PFWD" --config "$WORK/firewall_rules.json" --db "$WORK/firewall.db" \
	--socket "$WORK/pfwd.sock" --log-file "$WORK/firewall.log" --stats-every 1h 2>/dev/null &
PFWD_PID=$!
for _ in $(seq 100); do
	kill -0 "$PFWD_PID" 2>/dev/null || { cat "$WORK/firewall.log" >&2 || true; die "pfwd exited at start (its log is above)"; }
	"$FWCTL" "${FWCTL_ARGS[@]}" status >/dev/null 2>&1 && break
	sleep 0.1
done
"$FWCTL" "${FWCTL_ARGS[@]}" status >/dev/null 2>&1 || die "pfwd did not answer within 10 s"
sed 's/^/  /' "$WORK/firewall.log"

if command -v nft >/dev/null; then
	say "The kernel side: pfwd's one table, in $FW's netfilter only"
	# stderr dropped: nft's own warnings about the xt fallback below.
	run ip netns exec "$FW" nft list table inet personal_firewall 2>/dev/null
	if "$FWCTL" "${FWCTL_ARGS[@]}" status --json 2>/dev/null | grep -q '"queue_mode": *"xt'; then
		echo "(This kernel lacks nft_queue, so pfw queues through the xt NFQUEUE target,"
		echo " which nft cannot print: that is the rule with only a comment, last in each chain.)"
	fi
fi

say "With pfw: traffic from the client"
expect allowed "ping $GOOD_IP -> $FW_IP" ping_from "$GOOD_IP"
expect allowed "tcp $GOOD_IP -> $FW_IP:80 (web)" tcp_from "$GOOD_IP" 80
expect blocked "tcp $GOOD_IP -> $FW_IP:23 (telnet)" tcp_from "$GOOD_IP" 23
expect blocked "ping $BAD_IP -> $FW_IP (blacklisted)" ping_from "$BAD_IP"
expect blocked "tcp $BAD_IP -> $FW_IP:80 (blacklisted)" tcp_from "$BAD_IP" 80

say "Why? fwctl explains a verdict without sending anything"
run "$FWCTL" "${FWCTL_ARGS[@]}" explain --src "$GOOD_IP" --protocol tcp --dst-port 23

say "A rule added while pfwd runs is in force within a second"
run "$FWCTL" "${FWCTL_ARGS[@]}" add "Block web" block --protocol tcp --ports 80
sleep 1
expect blocked "tcp $GOOD_IP -> $FW_IP:80 (web)" tcp_from "$GOOD_IP" 80
run "$FWCTL" "${FWCTL_ARGS[@]}" list

sleep 1 # the log writer commits in batches
say "What pfw logged (SQLite, read while pfwd writes)"
run "$FWCTL" "${FWCTL_ARGS[@]}" logs --type blocked

say "pfwd's own view"
run "$FWCTL" "${FWCTL_ARGS[@]}" status

if [ "$SURPRISES" -gt 0 ]; then
	say "${RED}$SURPRISES probe(s) did not behave as the config says: see above and $WORK/firewall.log${OFF}"
	cat "$WORK/firewall.log" >&2
	exit 1
fi
say "Done: pfw allowed and blocked exactly as configured"

#!/usr/bin/env bash
# Functional check of a proxy with the SIPp scenarios in tests/interop/, over UDP and TCP
# from the PBX (the vendors are UDP, as in trunks.toml and kamailio-dispatcher.list):
#
#   benches/harness/scenarios.sh --proxy kamailio|warp-edge [--warp-bin PATH] [--calls 200]
#       [--rate 50] [--out DIR]
#
#   answer    pbx_call.xml -> vendor_answer.xml (127.0.0.20): every call completes
#   failover  vendor_503.xml on .20 (takes the proxy's ACK), vendor_answer.xml on .21:
#             every call completes on the backup
#   vendor-bye  pbx_call_wait_bye.xml <- vendor_bye.xml: the vendor's BYE reaches the PBX
#   cancel    pbx_cancel.xml -> vendor_ring.xml: 200 for CANCEL, 487 relayed, ACKs
#   deny      deny_invite.xml from 127.0.0.11 (not in the ACL): 403
#
# Prints one line per case and transport; exit 0 when all pass.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

proxy=kamailio
warp_bin="$REPO/target/release/warp-edge"
calls=200
rate=50
out=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --proxy) proxy=$2; shift 2 ;;
        --warp-bin) warp_bin=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
check_tools
if [[ -z "$out" ]]; then out=$(mktemp -d /tmp/warp-scenarios.XXXXXX); else mkdir -p "$out"; fi
out=$(cd "$out" && pwd)

trap cleanup EXIT
trap 'exit 2' INT TERM

start_proxy
proxy_only=("${started_pids[@]}")

# Cumulative successful calls in the last screen a SIPp vendor printed (it prints one on exit).
screen_successes() {
    awk -F'|' '/Successful call/ { n = $3 } END { gsub(/ /, "", n); print n + 0 }' "$1"
}

# Stops the vendors started for a case, leaving the proxy running.
stop_vendors() {
    sleep 0.5
    local i
    for (( i = ${#started_pids[@]} - 1; i >= ${#proxy_only[@]}; i-- )); do
        stop_pid "${started_pids[i]}"
    done
    started_pids=("${proxy_only[@]}")
}

failures=0

# run_case NAME TRANSPORT PBX_SCENARIO SOURCE_IP EXPECT: runs the PBX side; EXPECT is
# "ok" (every call succeeds). Extra checks on the vendors are done by the caller.
run_pbx() {
    local name=$1 t=$2 scenario=$3 src=$4 n=$5
    local log="$out/$name-$t"
    (cd "$out" && sipp 127.0.0.1:5060 -sf "$SCENARIOS/$scenario" -i "$src" -bind_local -t "$t" \
        -r "$rate" -m "$n" -d 100 -default_behaviors all,-abortunexp -buff_size 4194304 \
        -trace_stat -stf "$log.csv" -trace_err -error_file "$log.errors" \
        -recv_timeout 10000 -timeout 60s -timeout_error -nostdin > "$log.screen" 2>&1)
}

report() { # name transport ok(0|1) detail
    local verdict=PASS
    if [[ $3 != 0 ]]; then verdict=FAIL; failures=$((failures + 1)); fi
    printf '%-5s %-10s %-4s %s\n' "$verdict" "$1" "$2" "$4"
}

pbx_counts() { # csv -> "successful failed"
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { ok = $col["SuccessfulCall(C)"]; ko = $col["FailedCall(C)"] }
        END { print ok + 0, ko + 0 }' "$1"
}

for t in u1 t1; do
    tname=$([[ $t == u1 ]] && echo udp || echo tcp)

    # answer
    start_vendor vendor_answer.xml 127.0.0.20
    rc=0; run_pbx answer "$t" pbx_call.xml 127.0.0.10 "$calls" || rc=$?
    stop_vendors
    read -r ok ko < <(pbx_counts "$out/answer-$t.csv")
    report answer "$tname" $(( rc != 0 || ok != calls )) "pbx: $ok ok, $ko failed of $calls"

    # failover
    n=$(( calls / 4 )); (( n < 10 )) && n=10
    start_vendor vendor_503.xml 127.0.0.20
    start_vendor vendor_answer.xml 127.0.0.21
    rc=0; run_pbx failover "$t" pbx_call.xml 127.0.0.10 "$n" || rc=$?
    stop_vendors
    read -r ok ko < <(pbx_counts "$out/failover-$t.csv")
    primary=$(screen_successes "$out/vendor-127.0.0.20.screen")
    backup=$(screen_successes "$out/vendor-127.0.0.21.screen")
    report failover "$tname" $(( rc != 0 || ok != n || primary != n || backup != n )) \
        "pbx: $ok ok of $n; primary 503+ACK complete: $primary; backup answered: $backup"

    # vendor hangs up
    n=$(( calls / 4 )); (( n < 10 )) && n=10
    start_vendor vendor_bye.xml 127.0.0.20 -d 100
    rc=0; run_pbx vendor-bye "$t" pbx_call_wait_bye.xml 127.0.0.10 "$n" || rc=$?
    stop_vendors
    read -r ok ko < <(pbx_counts "$out/vendor-bye-$t.csv")
    vend=$(screen_successes "$out/vendor-127.0.0.20.screen")
    report vendor-bye "$tname" $(( rc != 0 || ok != n || vend != n )) "pbx: $ok ok of $n; vendor BYE answered: $vend"

    # cancel
    start_vendor vendor_ring.xml 127.0.0.20
    rc=0; run_pbx cancel "$t" pbx_cancel.xml 127.0.0.10 "$n" || rc=$?
    stop_vendors
    read -r ok ko < <(pbx_counts "$out/cancel-$t.csv")
    vend=$(screen_successes "$out/vendor-127.0.0.20.screen")
    report cancel "$tname" $(( rc != 0 || ok != n || vend != n )) "pbx: $ok ok of $n; vendor 487+ACK complete: $vend"

    # deny
    rc=0; run_pbx deny "$t" deny_invite.xml 127.0.0.11 20 || rc=$?
    read -r ok ko < <(pbx_counts "$out/deny-$t.csv")
    report deny "$tname" $(( rc != 0 || ok != 20 )) "403 for $ok of 20 INVITEs from 127.0.0.11"
done

echo "logs: $out"
(( failures == 0 ))

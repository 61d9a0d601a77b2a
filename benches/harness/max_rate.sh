#!/usr/bin/env bash
# Steps the call rate up until calls fail or SIPp cannot hold the rate, and says which side
# ran out first.
#
#   benches/harness/max_rate.sh --proxy kamailio|warp-edge [--transport udp|tcp]
#       [--rates "500 1000 2000 3000 4000 5000 6000"] [--seconds 10] [--hold-ms 500]
#       [--warp-bin PATH]
#
# Each step is one load.sh run of rate x seconds calls (each run well under a minute). A
# step passes when every call succeeds and the achieved call rate is at least 95 % of the
# target. At the first step that does not, it prints who saturated: the SIPp PBX (one
# thread: near 100 % of a core), the SIPp vendor, the proxy, or the machine (2 cores: the
# three together near 200 %). The last passing rate is the maximum sustained rate *on this
# machine with SIPp on the same cores*, not the proxy's own ceiling.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
proxy=kamailio
transport=udp
rates="500 1000 2000 3000 4000 5000 6000"
seconds=10
hold_ms=500
extra=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --proxy) proxy=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        --rates) rates=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --hold-ms) hold_ms=$2; shift 2 ;;
        --warp-bin) extra+=(--warp-bin "$2"); shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        *) echo "max_rate.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cores=$(nproc)
best=0
for rate in $rates; do
    calls=$(( rate * seconds ))
    line=$("$HERE/load.sh" --proxy "$proxy" --transport "$transport" --rate "$rate" \
        --calls "$calls" --hold-ms "$hold_ms" "${extra[@]}" 2>/dev/null)
    rc=$?
    if [[ -z "$line" ]]; then
        echo "rate=$rate: load.sh failed before reporting (exit $rc); stopping"
        break
    fi
    echo "$line"
    verdict=$(awk -v rate="$rate" -v calls="$calls" -v cores="$cores" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        } END {
        ok = (v["failed"] == 0 && v["successful"] == calls && v["achieved_cps"] >= 0.95 * rate)
        p = v["peak_proxy_pct"]; s = v["peak_sipp_pbx_pct"]; w = v["peak_sipp_vendor_pct"]; a = v["peak_all_pct"]
        if (ok) { print "pass"; exit }
        why = sprintf("busiest second: proxy %d%%, SIPp PBX %d%%, SIPp vendor %d%% of a core, together %d%% of %d00%%", p, s, w, a, cores)
        if (s >= 85) side = "the SIPp PBX (single-threaded) saturated"
        else if (w >= 85) side = "the SIPp vendor (single-threaded) saturated"
        else if (a >= 85 * cores) side = "the machine saturated (all cores busy; proxy and SIPp share them)"
        else side = "the proxy fell behind (failed or late calls while SIPp had headroom; with UDP drops, bursts overflowed a receive buffer before any core was full)"
        printf "fail: %s [%s; achieved %s of %d cps, %s failed, %s retransmissions, %s UDP receive-buffer drops]\n", \
            side, why, v["achieved_cps"], rate, v["failed"], v["retransmissions"], v["udp_rcvbuf_drops"]
    }' <<< "$line")
    if [[ "$verdict" == pass ]]; then
        best=$rate
    else
        echo "rate=$rate $verdict"
        break
    fi
done
echo "max sustained rate: proxy=$proxy transport=$transport rate=$best (with SIPp on the same $cores cores)"

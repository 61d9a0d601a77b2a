#!/usr/bin/env bash
# Kamailio vs warp-edge in one sitting: alternating load.sh runs (A B B A A B ...), then the
# median CPU seconds per 1000 calls of each and the ratio B/A. The machine's speed drifts
# (by a third within an hour here), so only numbers from alternating runs are compared.
#
#   benches/harness/compare.sh [--a kamailio] [--b warp-edge] [--runs 5] [--transport udp]
#       [--rate 500] [--calls 5000] [--hold-ms 500] [--warp-bin PATH]
#
# --b kamailio gives an A/A run: its ratio shows the noise of the measurement itself.
# Every run line is kept in the log printed at the end.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
a=kamailio
b=warp-edge
runs=5
transport=udp
rate=500
calls=5000
hold_ms=500
extra=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --a) a=$2; shift 2 ;;
        --b) b=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --hold-ms) hold_ms=$2; shift 2 ;;
        --warp-bin) extra+=(--warp-bin "$2"); shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log=$(mktemp /tmp/warp-compare.XXXXXX.log)
failed_runs=0

run_one() { # label proxy
    local line rc
    line=$("$HERE/load.sh" --proxy "$2" --transport "$transport" --rate "$rate" --calls "$calls" \
        --hold-ms "$hold_ms" "${extra[@]}")
    rc=$?
    if [[ -z "$line" ]]; then
        echo "compare.sh: a run of $2 failed before reporting (exit $rc)" >&2
        failed_runs=$((failed_runs + 1))
        return
    fi
    (( rc == 0 )) || failed_runs=$((failed_runs + 1))
    echo "$1 $line" | tee -a "$log"
}

# ABBA order: each side goes first as often as second, so a drift within a round cancels.
for (( i = 0; i < runs; i++ )); do
    if (( i % 2 == 0 )); then
        run_one A "$a"; run_one B "$b"
    else
        run_one B "$b"; run_one A "$a"
    fi
done

awk -v a="$a" -v b="$b" -v transport="$transport" -v rate="$rate" -v calls="$calls" '
    function median(arr, n,    i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && arr[j-1] > arr[j]; j--) { t = arr[j]; arr[j] = arr[j-1]; arr[j-1] = t }
        return (n % 2) ? arr[(n+1)/2] : (arr[n/2] + arr[n/2+1]) / 2
    }
    {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if ($1 == "A") { na++; ca[na] = v["proxy_cpu_per_1k_calls"]; pa[na] = v["peak_proxy_pct"] }
        else           { nb++; cb[nb] = v["proxy_cpu_per_1k_calls"]; pb[nb] = v["peak_proxy_pct"] }
    }
    END {
        if (na == 0 || nb == 0) { print "compare.sh: not enough successful runs"; exit 1 }
        ma = median(ca, na); mb = median(cb, nb)
        printf "transport=%s rate=%d calls=%d runs=%d+%d\n", transport, rate, calls, na, nb
        printf "A %-9s median proxy CPU s per 1000 calls %.3f (median busiest-second %.0f%% of a core)\n", a, ma, median(pa, na)
        printf "B %-9s median proxy CPU s per 1000 calls %.3f (median busiest-second %.0f%% of a core)\n", b, mb, median(pb, nb)
        printf "ratio B/A %.2f\n", (ma > 0) ? mb / ma : 0
    }' "$log"
echo "runs: $log"
(( failed_runs == 0 )) || { echo "compare.sh: $failed_runs run(s) had failed calls or errors" >&2; exit 1; }

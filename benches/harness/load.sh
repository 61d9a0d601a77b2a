#!/usr/bin/env bash
# Fixed-rate SIP call load through one proxy, with the proxy's CPU cost per call.
#
#   benches/harness/load.sh --proxy kamailio|warp-edge --transport udp|tcp \
#       [--rate 500] [--calls 5000] [--hold-ms 500] [--warp-bin target/release/warp-edge] \
#       [--out DIR]
#
# Starts the proxy (Kamailio with kamailio.cfg, or warp-edge with warp-edge.toml), a SIPp
# vendor (vendor_answer.xml on 127.0.0.20:5080, UDP), then a SIPp PBX (pbx_call.xml from
# 127.0.0.10 to 127.0.0.1:5060 over --transport) at a fixed rate. It reads the proxy's
# utime+stime from /proc (every process of it: Kamailio forks workers) and SIPp's, before
# and after the PBX run, and prints one line of key=value pairs:
#
#   proxy transport rate calls successful failed achieved_cps wall_s proxy_cpu_s
#   proxy_cpu_per_1k_calls proxy_cpu_pct sipp_pbx_cpu_s sipp_pbx_cpu_pct sipp_vendor_cpu_s
#   sipp_vendor_cpu_pct peak_proxy_pct peak_sipp_pbx_pct peak_sipp_vendor_pct peak_all_pct
#   retransmissions udp_rcvbuf_drops out
#
# udp_rcvbuf_drops is the machine-wide RcvbufErrors count of /proc/net/snmp over the run:
# datagrams dropped because some socket's receive buffer was full (proxy or SIPp).
# CPU percentages are of one core (Kamailio's several processes can exceed 100); *_pct are
# run averages, peak_* the busiest one-second sample (peak_all_pct: the three together).
# Exit status: 0 when every call succeeded, 1 when some failed, 2 on a harness error.
# Everything started here is stopped on exit. Logs stay in --out (default a new /tmp dir).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

proxy=kamailio
transport=udp
rate=500
calls=5000
hold_ms=500
warp_bin="$REPO/target/release/warp-edge"
out=""

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --proxy) proxy=$2; shift 2 ;;
        --transport) transport=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --hold-ms) hold_ms=$2; shift 2 ;;
        --warp-bin) warp_bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

case "$transport" in udp) sipp_t=u1 ;; tcp) sipp_t=t1 ;; *) die "--transport must be udp or tcp" ;; esac
[[ "$rate" =~ ^[0-9]+$ && "$calls" =~ ^[0-9]+$ && "$hold_ms" =~ ^[0-9]+$ ]] || die "rate, calls and hold-ms are integers"
(( rate > 0 && calls > 0 )) || die "rate and calls must be positive"
check_tools

if [[ -z "$out" ]]; then
    out=$(mktemp -d /tmp/warp-harness.XXXXXX)
else
    mkdir -p "$out"
fi
out=$(cd "$out" && pwd)
tck=$(getconf CLK_TCK)

trap cleanup EXIT
trap 'exit 2' INT TERM

start_proxy
start_vendor vendor_answer.xml 127.0.0.20
vendor_pid=$last_vendor_pid

# === the run ===
# Calls in flight are capped well above rate x call length so the cap never shapes the load.
limit=$(( rate * (hold_ms / 1000 + 4) ))
(( limit < 1000 )) && limit=1000
global_timeout=$(( calls / rate + hold_ms / 1000 + 40 ))

mapfile -t proxy_pids < <(proc_tree "$proxy_pid")
proxy_before=$(cpu_ticks "${proxy_pids[@]}")
vendor_before=$(cpu_ticks "$vendor_pid")
udp_drops() { awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp; }
drops_before=$(udp_drops)
t0=$(now)

# `times` in the subshell reports the CPU of its one child, the PBX SIPp.
set +e
(
    cd "$out"
    sipp 127.0.0.1:5060 -sf "$SCENARIOS/pbx_call.xml" -i 127.0.0.10 -bind_local -t "$sipp_t" \
        -r "$rate" -m "$calls" -l "$limit" -d "$hold_ms" \
        -default_behaviors all,-abortunexp -buff_size 4194304 \
        -trace_stat -stf "$out/pbx_stat.csv" -fd 1 \
        -trace_err -error_file "$out/pbx_errors.log" \
        -recv_timeout 10000 -timeout "${global_timeout}s" -timeout_error -nostdin \
        > "$out/pbx.screen" 2>&1 &
    echo "$!" > "$out/pbx.pid"
    wait "$!"
    echo "rc $?"
    times
) > "$out/pbx.times" &
run_pid=$!

# Once a second: elapsed time and the CPU ticks of proxy, PBX SIPp and vendor SIPp, for the
# busiest-second figures (a run's average hides saturation when failed calls stretch it).
for _ in $(seq 50); do [[ -s "$out/pbx.pid" ]] && break; sleep 0.02; done
pbx_pid=$(cat "$out/pbx.pid" 2>/dev/null || echo 0)
: > "$out/cpu_samples"
while kill -0 "$run_pid" 2>/dev/null; do
    echo "$(now) $(cpu_ticks "${proxy_pids[@]}") $(cpu_ticks "$pbx_pid") $(cpu_ticks "$vendor_pid")" >> "$out/cpu_samples"
    sleep 1
done
wait "$run_pid"
set -e

t1=$(now)
mapfile -t proxy_pids_after < <(proc_tree "$proxy_pid")
proxy_after=$(cpu_ticks "${proxy_pids_after[@]}")
vendor_after=$(cpu_ticks "$vendor_pid")
drops_after=$(udp_drops)

kill -0 "$proxy_pid" 2>/dev/null || echo "load.sh: warning: $proxy died during the run (log: $out/proxy.log)" >&2
(( ${#proxy_pids_after[@]} == ${#proxy_pids[@]} )) \
    || echo "load.sh: warning: $proxy had ${#proxy_pids[@]} processes before and ${#proxy_pids_after[@]} after" >&2

# === report ===
[[ -s "$out/pbx_stat.csv" ]] || die "SIPp wrote no statistics (see $out/pbx.screen)"
sipp_rc=$(awk '$1 == "rc" { print $2 }' "$out/pbx.times")
# Line 3 of `times` in the subshell: children's user and system time, e.g. "0m1.230s 0m0.410s".
pbx_cpu=$(awk 'NR == 3 {
    n = split($1 " " $2, t, " "); s = 0
    for (i = 1; i <= n; i++) { split(t[i], ms, "m"); sub("s", "", ms[2]); s += ms[1] * 60 + ms[2] }
    printf "%.3f", s }' "$out/pbx.times")

# pbx_stat.csv: ';'-separated, header row names the columns; a row every second and one at
# the end. Time columns hold "date<TAB>time<TAB>epoch".
read -r successful failed achieved retrans < <(awk -F';' -v calls="$calls" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    {
        split($col["StartTime"], st, "\t"); split($col["CurrentTime"], ct, "\t")
        out = $col["OutgoingCall(C)"] + 0
        if (out < calls && out > 0 && ct[3] > st[3]) { gen_rate = out / (ct[3] - st[3]) }
        if (out >= calls && done_t == "") { done_t = ct[3] - st[3] }
        ok = $col["SuccessfulCall(C)"]; ko = $col["FailedCall(C)"]
        rx = $col["Retransmissions(C)"]
    }
    END {
        # Rate at the last sample taken while calls were still being created; for a run
        # shorter than one sample, all calls over the time they took.
        if (gen_rate == "" && done_t > 0) gen_rate = calls / done_t
        printf "%d %d %.1f %d\n", ok, ko, gen_rate, rx
    }' "$out/pbx_stat.csv")

# Busiest second of each (percent of one core) and of the three together, from cpu_samples.
read -r proxy_peak pbx_peak vendor_peak all_peak < <(awk -v tck="$tck" '
    NR > 1 && $1 > t {
        dt = $1 - t; a = ($2 - p) / tck / dt * 100; b = ($3 - q) / tck / dt * 100; c = ($4 - r) / tck / dt * 100
        if (a > pa) pa = a; if (b > pb) pb = b; if (c > pc) pc = c; if (a + b + c > pt) pt = a + b + c
    }
    { t = $1; p = $2; q = $3; r = $4 }
    END { printf "%.0f %.0f %.0f %.0f\n", pa, pb, pc, pt }' "$out/cpu_samples")

awk -v proxy="$proxy" -v transport="$transport" -v rate="$rate" -v calls="$calls" \
    -v ok="$successful" -v ko="$failed" -v achieved="$achieved" \
    -v t0="$t0" -v t1="$t1" -v tck="$tck" \
    -v pb="$proxy_before" -v pa="$proxy_after" -v vb="$vendor_before" -v va="$vendor_after" \
    -v pbx="$pbx_cpu" -v retrans="$retrans" -v out="$out" \
    -v drops=$(( drops_after - drops_before )) -v ppk="$proxy_peak" -v spk="$pbx_peak" -v vpk="$vendor_peak" -v apk="$all_peak" 'BEGIN {
    wall = t1 - t0
    pcpu = (pa - pb) / tck
    vcpu = (va - vb) / tck
    per1k = (ok > 0) ? pcpu * 1000 / ok : 0
    printf "proxy=%s transport=%s rate=%d calls=%d successful=%d failed=%d achieved_cps=%.1f wall_s=%.2f ", \
        proxy, transport, rate, calls, ok, ko, achieved, wall
    printf "proxy_cpu_s=%.2f proxy_cpu_per_1k_calls=%.3f proxy_cpu_pct=%.1f ", pcpu, per1k, 100 * pcpu / wall
    printf "sipp_pbx_cpu_s=%.2f sipp_pbx_cpu_pct=%.1f sipp_vendor_cpu_s=%.2f sipp_vendor_cpu_pct=%.1f ", \
        pbx, 100 * pbx / wall, vcpu, 100 * vcpu / wall
    printf "peak_proxy_pct=%d peak_sipp_pbx_pct=%d peak_sipp_vendor_pct=%d peak_all_pct=%d ", ppk, spk, vpk, apk
    printf "retransmissions=%d udp_rcvbuf_drops=%d out=%s\n", retrans, drops, out
}'

if [[ "$sipp_rc" != 0 || "$failed" != 0 || "$successful" != "$calls" ]]; then
    echo "load.sh: SIPp exit $sipp_rc, $failed failed, $successful/$calls successful (errors: $out/pbx_errors.log)" >&2
    exit 1
fi
exit 0

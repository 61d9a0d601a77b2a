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
#   sipp_vendor_cpu_pct retransmissions out
#
# CPU percentages are of one core (Kamailio's several processes can exceed 100).
# Exit status: 0 when every call succeeded, 1 when some failed, 2 on a harness error.
# Everything started here is stopped on exit. Logs stay in --out (default a new /tmp dir).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCENARIOS="$REPO/tests/interop"

proxy=kamailio
transport=udp
rate=500
calls=5000
hold_ms=500
warp_bin="$REPO/target/release/warp-edge"
out=""

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
die() { echo "load.sh: $*" >&2; exit 2; }

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

case "$proxy" in kamailio|warp-edge) ;; *) die "--proxy must be kamailio or warp-edge" ;; esac
case "$transport" in udp) sipp_t=u1 ;; tcp) sipp_t=t1 ;; *) die "--transport must be udp or tcp" ;; esac
[[ "$rate" =~ ^[0-9]+$ && "$calls" =~ ^[0-9]+$ && "$hold_ms" =~ ^[0-9]+$ ]] || die "rate, calls and hold-ms are integers"
(( rate > 0 && calls > 0 )) || die "rate and calls must be positive"
command -v sipp >/dev/null || die "sipp not found (apt-get install -y sip-tester)"
if [[ "$proxy" == kamailio ]]; then
    command -v kamailio >/dev/null || die "kamailio not found (apt-get install -y kamailio)"
else
    [[ -x "$warp_bin" ]] || die "$warp_bin not found (cargo build --release)"
    warp_bin=$(cd "$(dirname "$warp_bin")" && pwd)/$(basename "$warp_bin")
fi

if [[ -z "$out" ]]; then
    out=$(mktemp -d /tmp/warp-harness.XXXXXX)
else
    mkdir -p "$out"
fi
out=$(cd "$out" && pwd)
tck=$(getconf CLK_TCK)

# === processes we start, stopped on exit ===
proxy_pid=""
vendor_pid=""

stop() {
    local pid=$1 name=$2
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "load.sh: $name ($pid) ignored SIGTERM for 5 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop "$vendor_pid" "SIPp vendor"
    stop "$proxy_pid" "$proxy"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# === helpers ===

# Every process in the tree under $1, $1 included.
proc_tree() {
    local pid=$1 child
    echo "$pid"
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        proc_tree "$child"
    done
}

# utime+stime in clock ticks, summed over the given pids (fields 14 and 15 of
# /proc/PID/stat; counted after the ")" that ends the command name).
cpu_ticks() {
    local total=0 pid stat
    local -a f
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a f <<< "$stat"
        total=$(( total + f[11] + f[12] ))
    done
    echo "$total"
}

port_busy() { # proto addr:port
    local flag=-Hlun
    [[ "$1" == tcp ]] && flag=-Hltn
    [[ -n "$(ss $flag "src $2" 2>/dev/null)" ]]
}

now() { date +%s.%N; }

# === start the proxy ===
for sock in udp:127.0.0.1:5060 tcp:127.0.0.1:5060 udp:127.0.1.1:5060 tcp:127.0.1.1:5060 \
            udp:127.0.0.20:5080; do
    if port_busy "${sock%%:*}" "${sock#*:}"; then
        die "${sock} is already in use (another proxy or SIPp still running?)"
    fi
done

if [[ "$proxy" == kamailio ]]; then
    # -DD: stay in the foreground (no daemon) so $! is the main process; -E: log to stderr.
    kamailio -f "$HERE/kamailio.cfg" -DD -E -m 256 -M 16 -x tlsf \
        -A "DBURL=\"text://$HERE/kamailio-db\"" \
        -A "DSLIST=\"$HERE/kamailio-dispatcher.list\"" \
        > "$out/proxy.log" 2>&1 &
    proxy_pid=$!
else
    "$warp_bin" run --config "$HERE/warp-edge.toml" > "$out/proxy.log" 2>&1 &
    proxy_pid=$!
fi

# Ready when a known trunk's OPTIONS gets 200 over the transport under test.
ready=0
for _ in $(seq 40); do
    kill -0 "$proxy_pid" 2>/dev/null || { cat "$out/proxy.log" >&2; die "$proxy exited at start (log: $out/proxy.log)"; }
    if (cd "$out" && sipp 127.0.0.1:5060 -sf "$SCENARIOS/options_ok.xml" -i 127.0.0.10 -bind_local \
            -t "$sipp_t" -m 1 -recv_timeout 500 -timeout 2s -timeout_error -nostdin \
            > "$out/probe.out" 2>&1); then
        ready=1
        break
    fi
    sleep 0.25
done
(( ready )) || die "$proxy did not answer OPTIONS on 127.0.0.1:5060/$transport (log: $out/proxy.log)"

# === start the vendor ===
(cd "$out" && exec sipp -sf "$SCENARIOS/vendor_answer.xml" -i 127.0.0.20 -p 5080 -bind_local -t u1 \
    -default_behaviors all,-abortunexp -buff_size 4194304 -nostdin \
    > "$out/vendor.screen" 2>&1) &
vendor_pid=$!
for _ in $(seq 50); do
    port_busy udp 127.0.0.20:5080 && break
    kill -0 "$vendor_pid" 2>/dev/null || die "SIPp vendor exited at start (see $out/vendor.screen)"
    sleep 0.1
done
port_busy udp 127.0.0.20:5080 || die "SIPp vendor is not listening on 127.0.0.20:5080"

# === the run ===
# Calls in flight are capped well above rate x call length so the cap never shapes the load.
limit=$(( rate * (hold_ms / 1000 + 4) ))
(( limit < 1000 )) && limit=1000
global_timeout=$(( calls / rate + hold_ms / 1000 + 40 ))

mapfile -t proxy_pids < <(proc_tree "$proxy_pid")
proxy_before=$(cpu_ticks "${proxy_pids[@]}")
vendor_before=$(cpu_ticks "$vendor_pid")
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
        > "$out/pbx.screen" 2>&1
    echo "rc $?"
    times
) > "$out/pbx.times"
set -e

t1=$(now)
mapfile -t proxy_pids_after < <(proc_tree "$proxy_pid")
proxy_after=$(cpu_ticks "${proxy_pids_after[@]}")
vendor_after=$(cpu_ticks "$vendor_pid")

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

awk -v proxy="$proxy" -v transport="$transport" -v rate="$rate" -v calls="$calls" \
    -v ok="$successful" -v ko="$failed" -v achieved="$achieved" \
    -v t0="$t0" -v t1="$t1" -v tck="$tck" \
    -v pb="$proxy_before" -v pa="$proxy_after" -v vb="$vendor_before" -v va="$vendor_after" \
    -v pbx="$pbx_cpu" -v retrans="$retrans" -v out="$out" 'BEGIN {
    wall = t1 - t0
    pcpu = (pa - pb) / tck
    vcpu = (va - vb) / tck
    per1k = (ok > 0) ? pcpu * 1000 / ok : 0
    printf "proxy=%s transport=%s rate=%d calls=%d successful=%d failed=%d achieved_cps=%.1f wall_s=%.2f ", \
        proxy, transport, rate, calls, ok, ko, achieved, wall
    printf "proxy_cpu_s=%.2f proxy_cpu_per_1k_calls=%.3f proxy_cpu_pct=%.1f ", pcpu, per1k, 100 * pcpu / wall
    printf "sipp_pbx_cpu_s=%.2f sipp_pbx_cpu_pct=%.1f sipp_vendor_cpu_s=%.2f sipp_vendor_cpu_pct=%.1f ", \
        pbx, 100 * pbx / wall, vcpu, 100 * vcpu / wall
    printf "retransmissions=%d out=%s\n", retrans, out
}'

if [[ "$sipp_rc" != 0 || "$failed" != 0 || "$successful" != "$calls" ]]; then
    echo "load.sh: SIPp exit $sipp_rc, $failed failed, $successful/$calls successful (errors: $out/pbx_errors.log)" >&2
    exit 1
fi
exit 0

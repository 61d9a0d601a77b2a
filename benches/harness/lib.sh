# Shared by load.sh and scenarios.sh (sourced, not run): start and stop the proxy under
# test and the SIPp vendors, read CPU time from /proc. Callers set HERE, REPO, out, proxy,
# warp_bin before calling start_proxy, and `trap cleanup EXIT`.

SCENARIOS="$REPO/tests/interop"

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Pids we started; cleanup stops them in reverse order.
started_pids=()
proxy_pid=""

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "$(basename "$0"): pid $pid ignored SIGTERM for 5 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local i
    for (( i = ${#started_pids[@]} - 1; i >= 0; i-- )); do
        stop_pid "${started_pids[i]}"
    done
    started_pids=()
}

# Every process in the tree under $1, $1 included (Kamailio forks its workers).
proc_tree() {
    local pid=$1 child
    echo "$pid"
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        proc_tree "$child"
    done
}

# utime+stime in clock ticks summed over the given pids: fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that closes the command name.
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

port_busy() { # udp|tcp addr:port
    local flag=-Hlun
    [[ "$1" == tcp ]] && flag=-Hltn
    [[ -n "$(ss $flag "src $2" 2>/dev/null)" ]]
}

now() { date +%s.%N; }

check_tools() {
    command -v sipp >/dev/null || die "sipp not found (apt-get install -y sip-tester)"
    if [[ "$proxy" == kamailio ]]; then
        command -v kamailio >/dev/null || die "kamailio not found (apt-get install -y kamailio)"
    elif [[ "$proxy" == warp-edge ]]; then
        [[ -x "$warp_bin" ]] || die "$warp_bin not found (cargo build --release)"
        warp_bin=$(cd "$(dirname "$warp_bin")" && pwd)/$(basename "$warp_bin")
    else
        die "--proxy must be kamailio or warp-edge"
    fi
}

# Starts the proxy on 127.0.0.1:5060 (UDP+TCP) with egress 127.0.1.1:5060 and waits until a
# known trunk's OPTIONS gets 200 over both transports. Sets proxy_pid.
start_proxy() {
    local sock
    for sock in udp:127.0.0.1:5060 tcp:127.0.0.1:5060 udp:127.0.1.1:5060 tcp:127.0.1.1:5060 \
                udp:127.0.0.20:5080 udp:127.0.0.21:5080; do
        if port_busy "${sock%%:*}" "${sock#*:}"; then
            die "$sock is already in use (another proxy or SIPp still running?)"
        fi
    done
    if [[ "$proxy" == kamailio ]]; then
        # -DD: foreground, so $! is the main process; -E: log to stderr; tlsf allocator.
        kamailio -f "$HERE/kamailio.cfg" -DD -E -m 1024 -M 16 -x tlsf \
            -A "DBURL=\"text://$HERE/kamailio-db\"" \
            -A "DSLIST=\"$HERE/kamailio-dispatcher.list\"" \
            > "$out/proxy.log" 2>&1 &
    else
        "$warp_bin" run --config "$HERE/warp-edge.toml" > "$out/proxy.log" 2>&1 &
    fi
    proxy_pid=$!
    started_pids+=("$proxy_pid")

    local t ready
    for t in u1 t1; do
        ready=0
        for _ in $(seq 40); do
            kill -0 "$proxy_pid" 2>/dev/null \
                || { tail -20 "$out/proxy.log" >&2; die "$proxy exited at start (log: $out/proxy.log)"; }
            if (cd "$out" && sipp 127.0.0.1:5060 -sf "$SCENARIOS/options_ok.xml" -i 127.0.0.10 \
                    -bind_local -t "$t" -m 1 -recv_timeout 500 -timeout 2s -timeout_error -nostdin \
                    > "$out/probe.out" 2>&1); then
                ready=1
                break
            fi
            sleep 0.25
        done
        (( ready )) || die "$proxy does not answer OPTIONS on 127.0.0.1:5060 ($t) (log: $out/proxy.log)"
    done
}

# start_vendor SCENARIO IP [extra sipp args...]: a SIPp UAS on IP:5080/UDP. Prints its pid
# in the variable last_vendor_pid.
start_vendor() {
    local scenario=$1 ip=$2
    shift 2
    (cd "$out" && exec sipp -sf "$SCENARIOS/$scenario" -i "$ip" -p 5080 -bind_local -t u1 \
        -default_behaviors all,-abortunexp -buff_size 4194304 -nostdin "$@" \
        > "$out/vendor-$ip.screen" 2>&1) &
    last_vendor_pid=$!
    started_pids+=("$last_vendor_pid")
    for _ in $(seq 50); do
        port_busy udp "$ip:5080" && return 0
        kill -0 "$last_vendor_pid" 2>/dev/null || die "SIPp vendor $scenario exited at start (see $out/vendor-$ip.screen)"
        sleep 0.1
    done
    die "SIPp vendor is not listening on $ip:5080"
}

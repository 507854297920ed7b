#!/usr/bin/env bash
# A/B of two server builds by the CPU time each spends per request, which the scheduling noise
# of a shared machine moves far less than requests per second. Both servers run at once, pinned
# to core 1; wrk (one thread) on core 0 sends the same request to each in turn, ROUNDS times.
# Per run it prints the requests answered, the req/s and the server's user + system CPU time
# per request (from /proc/<pid>/stat, all threads), then the median of each side.
#
#   benches/ab_cpu.sh URL_A PID_A URL_B PID_B SCRIPT.lua [CONNECTIONS] [SECONDS] [ROUNDS]
#
# URL_* are the endpoints (http://127.0.0.1:PORT/path), PID_* the servers' process ids, SCRIPT
# a wrk Lua script that sets the method, headers and body. Only 127.0.0.1 is accepted.
set -euo pipefail

[ $# -ge 5 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
url_a=$1 pid_a=$2 url_b=$3 pid_b=$4 script=$5
connections=${6:-64} seconds=${7:-3} rounds=${8:-5}
for url in "$url_a" "$url_b"; do
    case $url in http://127.0.0.1:*) ;; *) echo "ab_cpu.sh: $url is not on 127.0.0.1" >&2; exit 2 ;; esac
done
command -v wrk >/dev/null || { echo "ab_cpu.sh: wrk is not installed (Debian package wrk)" >&2; exit 2; }
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# One run: "<requests> <req/s> <CPU us per request>".
measure() {
    local url=$1 pid=$2 before after out requests rps
    before=$(cpu_ticks "$pid")
    out=$(taskset -c 0 wrk -t1 -c"$connections" -d"${seconds}s" -s "$script" "$url")
    after=$(cpu_ticks "$pid")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "ab_cpu.sh: $url answered with errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    echo "$requests $rps $(awk -v t=$((after - before)) -v hz="$ticks" -v n="$requests" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

a_cpu=() b_cpu=() a_rps=() b_rps=()
result=$(measure "$url_a" "$pid_a") # warm-up
result=$(measure "$url_b" "$pid_b")
for round in $(seq "$rounds"); do
    result=$(measure "$url_a" "$pid_a")
    read -r n rps cpu <<<"$result"
    echo "round $round A: $n requests, $rps req/s, $cpu us CPU per request"
    a_cpu+=("$cpu") a_rps+=("$rps")
    result=$(measure "$url_b" "$pid_b")
    read -r n rps cpu <<<"$result"
    echo "round $round B: $n requests, $rps req/s, $cpu us CPU per request"
    b_cpu+=("$cpu") b_rps+=("$rps")
done
echo "median A: $(printf '%s\n' "${a_rps[@]}" | median) req/s, $(printf '%s\n' "${a_cpu[@]}" | median) us CPU per request"
echo "median B: $(printf '%s\n' "${b_rps[@]}" | median) req/s, $(printf '%s\n' "${b_cpu[@]}" | median) us CPU per request"

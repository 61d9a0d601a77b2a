#!/usr/bin/env bash
# Runs one fuzz target with its committed seeds copied into the (git-ignored) corpus.
#   fuzz/run.sh parse_message [SECONDS] [extra libFuzzer flags...]
# Needs cargo-fuzz and a nightly toolchain. Builds in release mode with debug assertions
# (overflow checks on) and AddressSanitizer, cargo-fuzz's default sanitizer.
set -euo pipefail
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]}"
seconds="${2:-600}"
shift $(($# < 2 ? $# : 2))

corpus="$fuzz_dir/corpus/$target"
mkdir -p "$corpus"
for seed in "$fuzz_dir/seeds/$target"/*; do
    [ -e "$corpus/$(basename "$seed")" ] || cp "$seed" "$corpus/"
done

# The framing target is about long streams and the size limits: let inputs reach -max_len
# from the start instead of growing towards it.
case "$target" in
    stream_framing) set -- -len_control=0 "$@" ;;
esac

cd "$fuzz_dir/.."
exec cargo +nightly fuzz run --debug-assertions "$target" "$corpus" -- \
    -dict="$fuzz_dir/sip.dict" -max_len=4096 -max_total_time="$seconds" -print_final_stats=1 "$@"

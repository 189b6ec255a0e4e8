#!/usr/bin/env bash
# Drive the sprite TUI inside a real tmux (120x40, COLORTERM=truecolor) and check what it draws.
#
# usage: scripts/tui_tmux_check.sh [COMMAND ...]
#   default COMMAND: python -m difftool tui
#   without a model:  scripts/tui_tmux_check.sh python -m difftool.tui.demo
#
# Steps: start the app, press g (generate), wait for "done", press s (save PNG), wait for the PNG in
# the working directory (a fresh temp dir), check that it carries difftool's generation record (read
# back with difftool.runtime.record.read_png, by $PYTHON, default python3), capture the pane with escapes
# (capture-pane -e) and require 24-bit SGR colours (38;2;... and 48;2;...). Exits 0 when all checks
# pass, 1 when one fails, 2 when tmux is missing. Set KEEP=1 to keep the temp dir (pane capture + saved
# files).
set -euo pipefail

if ! command -v tmux >/dev/null 2>&1; then
    echo "tmux is not installed (Debian/Ubuntu: apt-get install -y tmux)" >&2
    exit 2
fi
if [ "$#" -eq 0 ]; then
    set -- python -m difftool tui
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/difftool-tmux.XXXXXX")"
socket="difftool-check-$$"
session="tui"
tmux_() { tmux -L "$socket" "$@"; }
cleanup() {
    tmux_ kill-server >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = "1" ]; then echo "kept: $workdir"; else rm -rf "$workdir"; fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "---- last pane text ----" >&2
    tmux_ capture-pane -t "$session" -p 2>/dev/null | tail -n 40 >&2 || true
    exit 1
}

# wait_for SECONDS PATTERN: poll the pane text until PATTERN (grep -E) shows up
wait_for() {
    local deadline=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if tmux_ capture-pane -t "$session" -p 2>/dev/null | grep -Eq "$2"; then return 0; fi
        sleep 0.5
    done
    return 1
}

app_cmd="$(printf '%q ' "$@")"
tmux_ -f /dev/null new-session -d -s "$session" -x 120 -y 40 -c "$workdir" \
    "env COLORTERM=truecolor TERM=tmux-256color $app_cmd; echo '[app exited]'; sleep 30"
tmux_ set-option -t "$session" -g default-terminal tmux-256color >/dev/null
tmux_ set-option -t "$session" -as terminal-features ',*:RGB' >/dev/null

echo "running: $app_cmd (in $workdir)"
wait_for 60 "Generate" || fail "the app did not start (no footer within 60 s)"
wait_for 60 "ready|loading" || fail "no backend status"
wait_for 120 "ready" || fail "the backend did not load within 120 s"

tmux_ send-keys -t "$session" g
wait_for 180 "#[0-9]+ done" || fail "generation did not finish within 180 s"

tmux_ send-keys -t "$session" s
deadline=$((SECONDS + 30))
until compgen -G "$workdir/*.png" >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no PNG saved in $workdir within 30 s"
    sleep 0.5
done
png="$(compgen -G "$workdir/*.png" | head -n 1)"
[ -f "${png%.png}.json" ] || fail "no sidecar JSON next to $png"
record="$("${PYTHON:-python3}" -c 'import sys; from difftool.runtime.record import read_png
r = read_png(sys.argv[1]); print(f"{r.sampler} {r.steps} steps, guidance {r.guidance:g}, {len(r.seeds)} seeds")' "$png")" \
    || fail "the PNG has no readable generation record"
sleep 1  # let the "Saved PNG" toast draw

tmux_ capture-pane -t "$session" -e -p > "$workdir/pane.ansi"
count() { { grep -o "$1" "$workdir/pane.ansi" || true; } | wc -l; }
fg=$(count $'\e\[[0-9;]*38;2;')
bg=$(count $'\e\[[0-9;]*48;2;')
low=$(count $'\e\[[0-9;]*38;5;')
blocks=$(count '▀')
echo "24-bit fg SGR: $fg, 24-bit bg SGR: $bg, 256-colour fg SGR: $low, half blocks: $blocks"
echo "saved: $(basename "$png") + $(basename "${png%.png}.json") (record: $record)"
[ "$fg" -gt 0 ] && [ "$bg" -gt 0 ] || fail "no 24-bit colour codes (38;2 / 48;2) in the pane"
[ "$blocks" -gt 100 ] || fail "the sprite grid (half blocks) is not on screen"

tmux_ send-keys -t "$session" C-q
echo "OK: truecolor sprite grid rendered in tmux, PNG (with its generation record) + JSON saved"

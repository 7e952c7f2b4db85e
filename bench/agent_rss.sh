#!/usr/bin/env bash
# Agent memory: 10 tail collectors (2 MB files, 200 000 lines in all) into one 64 MiB channel;
# prints the agent's RSS split once it has read everything.
#   bash bench/agent_rss.sh [path/to/tributary]
set -euo pipefail
bin="${1:-build/release/tools/tributary}"
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/logs"
{
  printf '[channels.main]\npath = "%s/main.chan"\ncapacity = "64M"\n' "$dir"
  for i in $(seq 0 9); do
    printf '[sources.s%d]\ntype = "tail"\nchannels = ["main"]\npaths = ["%s/logs/f%d.log"]\n' "$i" "$dir" "$i"
  done
} > "$dir/agent.toml"
for i in $(seq 0 9); do
  for j in $(seq 0 19999); do printf 'file %d line %-88d\n' "$i" "$j"; done > "$dir/logs/f$i.log"
done
"$bin" agent --config "$dir/agent.toml" 2> /dev/null &
pid=$!
# Wait (bounded) until the channel holds every line, then read the agent's memory.
for _ in $(seq 1 100); do
  "$bin" channel stat "$dir/main.chan" 2> /dev/null | grep -q "written      200000 records" && break
  sleep 0.1
done
grep -E 'VmHWM|RssAnon|RssFile' "/proc/$pid/status"

#!/bin/bash
# Starts dockerd without a bridge network (these machines must not create one) unless one already answers.
set -euo pipefail
sock=/var/run/docker.sock
if curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then exit 0; fi
echo "starting dockerd"
nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/img2vm-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if curl -fsS --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "dockerd did not come up; see /var/log/img2vm-dockerd.log" >&2
tail -20 /var/log/img2vm-dockerd.log >&2 || true
exit 1

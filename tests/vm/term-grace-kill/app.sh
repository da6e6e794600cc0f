trap '' TERM
echo "term-grace-kill: ignoring SIGTERM"
(sleep 1; kill -TERM 1) &
while :; do sleep 1; done

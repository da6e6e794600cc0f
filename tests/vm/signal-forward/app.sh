trap 'echo "signal-forward: got USR1"; exit 42' USR1
kill -USR1 1
# `wait` returns as soon as a trapped signal arrives; a foreground sleep would delay the trap.
sleep 30 &
wait $!
echo "signal-forward: no USR1 within 30 s"
exit 1

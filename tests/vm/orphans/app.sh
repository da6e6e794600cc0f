# Each (sleep &) subshell exits at once, so its sleep is re-parented to PID 1, which must reap it.
for i in $(seq 200); do (sleep 0.01 &); done
sleep 2
tries=0
while :; do
    zombies=0
    for f in /proc/[0-9]*/status; do
        while read -r key val rest; do
            if [ "$key" = State: ]; then [ "$val" = Z ] && zombies=$((zombies + 1)); break; fi
        done < "$f" 2>/dev/null
    done
    echo "orphans: $zombies zombies"
    [ "$zombies" -eq 0 ] && exit 0
    tries=$((tries + 1))
    [ "$tries" -ge 10 ] && exit 1
    sleep 0.5
done

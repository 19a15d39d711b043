# Stand-in for redis:7.4-alpine: Debian's redis-server. Like the official image, it accepts
# clients from other containers (protected mode off) and keeps its data in /data.
FROM cascade-standin/base
WORKDIR /data
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = redis-server ]; then shift; exec redis-server \"$@\" --protected-mode no; fi; exec \"$@\"", "--"]
CMD ["redis-server"]
